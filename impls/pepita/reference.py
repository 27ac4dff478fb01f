"""Published reference numbers the figures draw beside ours (paper values, not our results).

``TUTORIAL_CURVE``: test accuracy (%) after epochs 1…100 of the saved run in the authors'
``Tutorial_PEPITA_FullyConnectedNets_CIFAR-10.ipynb`` (CIFAR-10 FC PEPITA, η 0.01 ×0.1 at
epochs 60 and 90, B 64, keep 0.9), as saved in the notebook's outputs [code output].
``PAPER_TABLE``: the paper's main table (as the authors' slides show it, [author slides]): mean and std, %.
"""
from __future__ import annotations

TUTORIAL_CURVE = [float(v) for v in """
35.12 38.07 40.90 40.41 41.40 39.76 43.73 45.08 45.28 45.05 44.66 45.89 47.39 46.95 47.41 47.90 48.52 48.53
46.39 48.61 47.27 49.05 49.20 49.39 48.68 49.64 49.09 50.06 49.31 49.77 49.89 50.07 49.84 49.66 50.19 50.32
50.61 49.24 50.55 51.68 50.78 50.49 51.47 50.79 50.73 51.77 51.32 51.41 51.31 51.36 51.31 51.79 51.32 51.53
51.20 51.77 50.74 51.12 51.42 50.92 52.45 52.58 52.84 52.71 52.51 52.56 52.66 52.67 52.56 52.57 52.69 52.51
52.42 52.52 52.90 52.28 52.47 52.57 52.29 52.93 52.64 52.73 52.37 52.49 52.46 52.36 52.43 52.32 52.21 52.37
52.45 52.43 52.79 52.58 52.62 52.59 52.70 52.57 52.56 52.58
""".split()]

#: (rule, arch, dataset) -> (mean, std) test accuracy in %
PAPER_TABLE = {}
for _rule, _row in {
    "bp": [(98.63, 0.03), (55.27, 0.32), (27.58, 0.09), (98.86, 0.04), (64.99, 0.32), (34.20, 0.20)],
    "fa": [(98.42, 0.07), (53.82, 0.24), (24.61, 0.28), (98.50, 0.06), (57.51, 0.57), (27.15, 0.53)],
    "drtp": [(95.10, 0.10), (45.89, 0.16), (18.32, 0.18), (97.32, 0.25), (50.53, 0.81), (20.14, 0.68)],
    "pepita": [(98.01, 0.09), (52.57, 0.36), (24.91, 0.22), (98.29, 0.13), (56.33, 1.35), (27.56, 0.60)],
}.items():
    for _i, _cell in enumerate(_row):
        PAPER_TABLE[(_rule, ("fc", "conv")[_i // 3], ("mnist", "cifar10", "cifar100")[_i % 3])] = _cell

assert len(TUTORIAL_CURVE) == 100
