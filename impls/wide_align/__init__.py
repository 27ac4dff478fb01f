"""wide_align: Boopathy & Fiete, ICML 2022 -- How to train your wide neural network without backprop.

PyTorch. Modules: ``options`` (what a spec may name),
``models`` (NTK all-conv net, batch-axis norm, stacked over runs), ``rules`` (BP, FA, DFA,
Align-zero, Align-ada, Align-prop, last-layer), ``stacked`` (a batch of runs as one stacked net:
data, state, train epoch, evaluation), ``train`` (the programs the common driver trains and
their factory), ``evaluate`` (the evaluate-stage hook), ``alignment`` (the input-Gram alignment
score and its shuffled control), ``figures``, ``add_task`` (the recurrent Add task and its
program), ``imagenet`` (the streaming ImageFolder pipeline) and ``streaming`` (the stacked runs
on streamed ImageNet).
"""

#: Implementation version: part of every run id of this paper (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
