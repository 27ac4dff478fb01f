"""PEPITA (Dellaferrera & Kreiman, ICML 2022) and its BP/FA/DRTP baselines, in PyTorch.

Skeleton shared by every impl package: ``options`` (what a spec may name, no torch),
``models`` (networks and initialisations), ``rules`` (the PEPITA updates and the dispatch to
``impls.rules_torch``), ``stacked`` (the seeds of a batch as one stacked network: a train
epoch, an evaluation), ``train`` (its program for the common driver ``impls.common.driver``),
``figures`` (paper-only tables and plots), ``bench`` (epoch throughput), ``__main__`` (the
``train|evaluate`` entry).
"""

#: Implementation version: part of every run id of this paper (see impls.common.specs). Bump it
#: ("1" -> "2") in the commit that changes what the code computes, so stale runs are trained again.
IMPL_VERSION = "1"
