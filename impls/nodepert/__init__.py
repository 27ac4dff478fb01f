"""Node perturbation vs SGD (Mehta, Hiratani, Humphreys, Latham & Lillicrap), in JAX.

Skeleton shared by every impl package: ``options`` (what a spec may name, no JAX),
``models`` (networks), ``rules`` (learning rules), ``train`` (vectorised loop),
``__main__`` (the ``train|evaluate`` entry).
"""

#: Implementation version: part of every run id of this paper (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
