"""Node perturbation vs SGD (Mehta, Hiratani, Humphreys, Latham & Lillicrap), in JAX.

Skeleton shared by every impl package: ``options`` (what a spec may name, no JAX),
``models`` (networks), ``rules`` (learning rules), ``train`` (vectorised loop),
``__main__`` (the ``train|evaluate`` entry).
"""
