"""Epoch wall time and per-epoch accuracy of the ORIGINAL wide_align code (TensorFlow 1 graphs), for a
side-by-side comparison with ``bench_wide_align.py timing`` (issue 7's CPU target) and with our training
loop over seeds (``bench_wide_align_parity.py``, issue 17) on the same machine.

It does not contain or copy the original: it imports ``train_kmnist.py`` from a checkout of
FieteLab/Wide-Network-Alignment (commit d242886) that you pass with ``--original`` and calls its
``train_<rule>`` functions with the issue's setting -- the 3-layer net (3x3, strides 1, 2, 2, SAME),
batch 100, 55,000 training + 5,000 validation images (the original's KMNIST split of any
60,000-image IDX set; here Fashion-MNIST's files, same format and size). Its stdout is timestamped
line by line; the time between the original's ``Epoch: k`` and ``Epoch: k+1`` lines is one training
epoch plus its validation pass. Epoch 0 carries TensorFlow's warm-up, so the reported number is the
mean over epochs 1 .. E-1 (null with one epoch; every epoch's time is kept in ``all_epochs_s``).

Accuracy: each row also keeps the original's per-epoch ``Train set accuracy`` and ``Test set accuracy``
lines, in % (``train_acc``, ``val_acc``: its "test set" is the 5,000-image validation split). The
original seeds numpy with the literal 99 (init, then again before the batch order; it draws nothing
from TensorFlow's RNG), so ``--seeds`` runs it with another seed without editing the checkout: the
module's ``np`` is swapped for a proxy whose ``random.seed(99)`` seeds numpy with the chosen seed
(``--seeds 99`` is the original unchanged).

Needs its own environment, e.g. (the original pins tensorflow~=2.9.1, which has no Python 3.11
wheels; TF 2.x's ``tf.compat.v1`` graph mode runs the same code, ``tf.layers`` needs tf_keras):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf_keras
    git clone https://github.com/FieteLab/Wide-Network-Alignment /tmp/wna && git -C /tmp/wna checkout d242886
    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python benchmarks/bench_wide_align_original.py \\
        --original /tmp/wna --widths 8 64 --rules bp alignada alignzero fa dfa
    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python benchmarks/bench_wide_align_original.py \\
        --original /tmp/wna --widths 8 --rules bp alignada --lrs 1 5 --seeds 99 100 101 --epochs 3 --out FILE

The original sessions use TensorFlow's default thread pools (all cores); to compare with
``bench_wide_align.py --threads N`` on a larger machine run both under ``taskset -c 0-(N-1)``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
ORIGINAL_SEED = 99  # the literal every np.random.seed call of train_kmnist.py passes
ORIGINAL_FUNCTION = {"bp": "train_normal", "alignada": "train_alignada", "alignzero": "train_alignzero",
                     "fa": "train_fa", "dfa": "train_dfa", "lastlayer": "train_lastlayer"}


class StampedLines(io.TextIOBase):
    """A stdout replacement that remembers (perf_counter, line) for every complete line."""

    def __init__(self):
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        now = time.perf_counter()
        self.lines.extend((now, line) for line in done)
        return len(text)


def epoch_seconds(lines: list[tuple[float, str]]) -> list[float]:
    """Seconds between consecutive ``Epoch: k`` lines (the last epoch is closed by the final ``Time``)."""
    marks = [t for t, line in lines if line.startswith("Epoch: ")]
    ends = [t for t, line in lines if line.startswith("Time ")]
    if not marks or len(ends) < 2:
        raise RuntimeError("the original printed no 'Epoch: k' / final 'Time' lines; is --original its checkout?")
    return [b - a for a, b in zip(marks, marks[1:] + [ends[-1]])]


def accuracy_curves(lines: list[tuple[float, str]], epochs: int) -> dict[str, list[float]]:
    """Per-epoch train and validation ("Test set") accuracy in %, from the original's printed lines."""
    found = {"train_acc": [], "val_acc": []}
    for _, line in lines:
        for key, prefix in (("train_acc", "Train set accuracy: "), ("val_acc", "Test set accuracy: ")):
            if line.startswith(prefix):
                found[key].append(100.0 * float(line[len(prefix):]))
    for key, values in found.items():
        if len(values) != epochs:
            raise RuntimeError(f"the original printed {len(values)} {key} lines for {epochs} epochs")
    return found


class _SeededRandom:
    """``numpy.random`` whose ``seed(ORIGINAL_SEED)`` seeds with ``seed`` instead (everything else passes through)."""

    def __init__(self, random, seed: int):
        self._random, self._seed = random, seed

    def seed(self, value=None):
        if value != ORIGINAL_SEED:
            raise RuntimeError(f"the original called np.random.seed({value!r}); this script maps only {ORIGINAL_SEED}")
        self._random.seed(self._seed)

    def __getattr__(self, name):
        return getattr(self._random, name)


class SeededNumpy:
    """A stand-in for the original module's ``np``: numpy, with ``random.seed(99)`` meaning ``random.seed(seed)``."""

    def __init__(self, numpy, seed: int):
        if not 0 <= seed < 2 ** 32:
            raise ValueError(f"seed {seed} is not a numpy legacy seed (0 <= seed < 2**32)")
        self._numpy = numpy
        self.random = _SeededRandom(numpy.random, seed)

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def load_original(path: Path):
    if not (path / "train_kmnist.py").is_file():
        sys.exit(f"error: --original {path} has no train_kmnist.py; pass a checkout of "
                 "FieteLab/Wide-Network-Alignment (commit d242886)")
    sys.path.insert(0, str(path))
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.layers under TF >= 2.16 (needs tf_keras)
    argv, sys.argv = sys.argv, sys.argv[:1]  # the module parses sys.argv[1] as its grid "part"
    try:
        import train_kmnist
    finally:
        sys.argv = argv
    return train_kmnist


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", type=Path, required=True, help="checkout of FieteLab/Wide-Network-Alignment")
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                   help="folder with the four 60k/10k IDX .gz files (Fashion-MNIST, KMNIST, MNIST)")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    p.add_argument("--rules", nargs="+", default=["bp", "alignada", "alignzero", "fa", "dfa"],
                   choices=sorted(ORIGINAL_FUNCTION))
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs per run (timing: epoch 0 is TensorFlow's warm-up, epochs 1 .. E-1 are averaged)")
    p.add_argument("--lrs", type=float, nargs="+", default=[1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[ORIGINAL_SEED],
                   help=f"numpy seeds replacing the original's {ORIGINAL_SEED} (init and batch order)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    if any(not 0 <= s < 2 ** 32 for s in args.seeds):
        p.error("--seeds must lie in [0, 2**32)")
    missing = [f for f in IDX_FILES if not (args.data / f).is_file()]
    if missing:
        sys.exit(f"error: --data {args.data} lacks {', '.join(missing)}")
    original = load_original(args.original.resolve())
    work = Path(tempfile.mkdtemp(prefix="wna-original-"))
    (work / "data").mkdir()
    for f in IDX_FILES:
        os.symlink((args.data / f).resolve(), work / "data" / f)
    os.chdir(work)  # the original reads ./data/*.gz
    rows, numpy = [], original.np
    for width in args.widths:
        for rule in args.rules:
            for lr in args.lrs:
                for seed in args.seeds:
                    stamped, stdout = StampedLines(), sys.stdout
                    sys.stdout, original.np = stamped, SeededNumpy(numpy, seed)
                    try:
                        getattr(original, ORIGINAL_FUNCTION[rule])([width] * 3, [3] * 3, [1, 2, 2], ["SAME"] * 3,
                                                                   f"bench_{rule}_{width}", lr_val=lr,
                                                                   batch_size=100, epochs=args.epochs)
                    finally:
                        sys.stdout, original.np = stdout, numpy
                    per_epoch = epoch_seconds(stamped.lines)
                    after_warm_up = per_epoch[1:]
                    mean_s = round(sum(after_warm_up) / len(after_warm_up), 3) if after_warm_up else None
                    row = {"rule": rule, "width": width, "lr": lr, "seed": seed, "epochs": args.epochs,
                           "implementation": "original (TF compat.v1)",
                           "epoch_plus_val_s": mean_s,
                           "epoch0_s": round(per_epoch[0], 3), "all_epochs_s": [round(s, 3) for s in per_epoch],
                           **accuracy_curves(stamped.lines, args.epochs)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
