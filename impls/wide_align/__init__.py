"""wide_align: Boopathy & Fiete, ICML 2022 -- How to train your wide neural network without backprop.

Spec: ../shared/papers/wide_align.md. PyTorch. Modules: ``options`` (what a spec may name),
``models`` (NTK all-conv net, batch-axis norm, stacked over runs), ``rules`` (BP, FA, DFA,
Align-zero, Align-ada, Align-prop, last-layer), ``train`` (the batch train loop),
``alignment`` (the input-Gram alignment score and its shuffled control), ``figures``,
``add_task`` (the recurrent Add task), ``imagenet`` (the streaming ImageFolder pipeline) and
``streaming`` (the train program on streamed ImageNet).
"""
