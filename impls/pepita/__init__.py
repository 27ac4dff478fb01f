"""PEPITA (Dellaferrera & Kreiman, ICML 2022) and its BP/FA/DRTP baselines, in PyTorch.

Skeleton shared by every impl package: ``options`` (what a spec may name, no torch),
``models`` (networks and initialisations), ``rules`` (the PEPITA updates and the dispatch to
``impls.rules_torch``), ``train`` (the stacked-seed loop), ``figures`` (paper-only tables and
plots), ``__main__`` (the ``train|evaluate`` entry).
"""
