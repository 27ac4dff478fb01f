"""The streaming ImageFolder pipeline on a tiny tree the test writes itself, and one data-parallel epoch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impls.common import image_folder
from impls.common.errors import DatasetUnavailable
from impls.two_routes import imagenet

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("n01", "n02", "n03")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(24, 48, size=2)
                img = np.clip(rng.normal(60 + 60 * c, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{name}_{i}.JPEG")
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    return root


def test_index_lists_every_image_with_its_class(tree, tmp_path):
    """The common index (the ``dataset`` rule's ``prepare imagenet``) is what the two_routes stream reads."""
    out = tmp_path / "imagenet.npz"
    image_folder.prepare_image_folder_index(out, tree)
    idx = dict(np.load(out, allow_pickle=False))
    assert list(idx["classes"]) == list(CLASSES)
    assert str(idx["root"]) == str(tree.resolve())
    assert len(idx["train_files"]) == 24 and len(idx["val_files"]) == 9
    assert sorted(np.bincount(idx["val_labels"])) == [3, 3, 3]
    assert all(f.split("/")[1] == CLASSES[y] for f, y in zip(idx["train_files"], idx["train_labels"]))
    with pytest.raises(DatasetUnavailable, match="ImageNet tree not found"):   # not a tree: clear error
        image_folder.prepare_image_folder_index(tmp_path / "x.npz", tmp_path)
    assert not (tmp_path / "x.npz").exists()


def test_train_stream_augments_shuffles_and_is_reproducible(tree):
    idx = image_folder.index_image_folder(tree)
    batches = list(imagenet.loader(idx, "train", 4, 16, workers=2, seed=0, epoch=1))
    assert len(batches) == 6
    x, y, m = batches[0]
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.float32 and m.sum() == 4
    assert set(np.concatenate([b[1] for b in batches])) == {0, 1, 2}
    assert abs(float(np.mean([b[0].mean() for b in batches]))) < 3   # ImageNet-normalised, not raw pixels
    other = list(imagenet.loader(idx, "train", 4, 16, workers=2, seed=0, epoch=2))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(batches, other))   # reshuffled per epoch
    # torchvision's random crops draw from each worker's torch seed, fixed by the loader's generator
    again = list(imagenet.loader(idx, "train", 4, 16, workers=2, seed=0, epoch=1))
    assert all(np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0]) for a, b in zip(batches, again))


FIRST_BATCH = """
import hashlib, sys
import numpy as np
from impls.common import image_folder
from impls.two_routes import imagenet
idx = image_folder.index_image_folder(sys.argv[1])
for epoch in (1, 2):
    x, y, _ = next(imagenet.loader(idx, "train", 4, 16, workers=0, seed=3, epoch=epoch))
    print(epoch, hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())
"""


def test_in_process_stream_is_the_same_in_every_process(tree):
    """workers=0 (the alignment batch): the crops come from (seed, epoch), not from the process's torch seed."""
    import torch

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.run([sys.executable, "-c", FIRST_BATCH, str(tree)], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-3000:] + runs[1].stderr[-3000:]
    first, second = (dict(line.split() for line in r.stdout.splitlines()) for r in runs)
    assert first == second and first["1"] != first["2"]
    # decoding does not move the caller's global torch RNG, and the caller's draws do not move the crops
    idx = image_folder.index_image_folder(tree)
    before = torch.get_rng_state()
    stream = imagenet.loader(idx, "train", 4, 16, workers=0, seed=3, epoch=1)
    a = next(stream)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)
    b = next(stream)
    again = imagenet.loader(idx, "train", 4, 16, workers=0, seed=3, epoch=1)
    for old, new in zip((a, b), (next(again), next(again))):
        assert np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1])


def test_validation_scores_every_image_once(tree):
    idx = image_folder.index_image_folder(tree)
    batches = list(imagenet.loader(idx, "val", 4, 16, workers=1))
    masks = np.concatenate([b[2] for b in batches])
    labels = np.concatenate([b[1] for b in batches])[masks > 0]
    assert len(batches) == 3 and masks.sum() == 9
    np.testing.assert_array_equal(labels, idx["val_labels"])


def test_one_data_parallel_epoch_over_two_devices(tree, tmp_path):
    """ResNet-18 (width 2, 32 px) on the tree, batch 8 sharded over 2 forced host devices, through train_batch."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    image_folder.prepare_image_folder_index(datasets / "imagenet.npz", tree)
    spec = {"paper": "two_routes", "rule": "sa", "dataset": "imagenet", "seed": 0, "epochs": 1, "batch_size": 8,
            "scale": "paper", "model": {"arch": "resnet", "stem": "imagenet", "depth": 18, "width": 2,
                                        "image_size": 32},
            "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": []}}
    from impls.common import specs

    spec = specs.validate_spec(spec)
    rid = specs.run_id(spec)
    batch = tmp_path / "results" / "two_routes" / "batches" / "b0" / "batch.json"
    batch.parent.mkdir(parents=True)
    batch.write_text(json.dumps({"paper": "two_routes", "batch_id": "b0", "runs": {rid: spec}}))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CREDITBENCH_DATA_WORKERS": "2",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "impls.two_routes", "train", str(batch), "--datasets-dir",
                           str(datasets), "--platform", "cpu"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "results" / "two_routes" / "runs" / rid
    record = json.loads((run / "train.json").read_text())
    assert record["status"] == "ok" and record["devices"] == 2 and record["val_images_scored"] == 9
    assert record["steps_per_epoch"] == 3
    import pandas as pd

    m = pd.read_csv(run / "metrics.csv")
    top1 = m[(m["split"] == "test") & (m["metric"] == "acc")]["value"]
    assert len(top1) == 2 and top1.between(0, 100).all()
    assert m["metric"].str.startswith("weight_angle:").any()
