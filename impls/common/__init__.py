"""Shared plumbing for every paper's implementation.

Split by concern (small modules with one job each, rather than one catch-all utility file):

- ``io``          atomic file writes (JSON, CSV, npz) -- nothing is ever half-written.
- ``datasets``    dataset preparation (the ``dataset`` rule) and loading (the impls).
- ``specs``       run specs: validation, canonical form, stable run ids.
- ``plan``        paper.yaml -> figures -> runs -> batches (used by the Snakefile).
- ``metrics``     tidy per-epoch metrics and final.json.
- ``provenance``  versions, device and git commit recorded with every result.
- ``backend``     the accelerator a job expects, asserted before any work.
- ``cli``         the ``python -m impls.<paper> train|evaluate`` entry point.
"""
