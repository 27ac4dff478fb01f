"""wide_align's streaming ImageNet pipeline on a tiny ImageFolder tree the test writes itself."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from impls.common import datasets, image_folder
from impls.common import specs as speclib
from impls.common.errors import SpecError
from impls.common.io import atomic_write_json, read_json
from impls.wide_align import imagenet
from tests.conftest import REPO

torch.set_num_threads(1)
CLASSES = ("n01440764", "n01443537", "n01484850")
N_TRAIN, N_VAL = 7, 3   # per class: 21 train and 9 val images
#: solid colour of every image of a class (so normalisation can be checked exactly)
COLOURS = ((255, 0, 128), (0, 64, 255), (200, 200, 10))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """ROOT/{train,val}/<wnid>/ with JPEG and PNG images of odd sizes, grayscale among them, plus a stray file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ilsvrc")
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(17, 61, size=2))
                img = Image.new("RGB", (w, h), COLOURS[c])
                if split == "train" and i == 0:
                    img = img.convert("L")                       # a grayscale file: converted to RGB
                ext = ".png" if i % 2 else ".JPEG"
                img.save(root / split / name / f"{name}_{i}{ext}")
    (root / "train" / CLASSES[0] / "synset.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def datasets_dir(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("datasets")
    done = subprocess.run([sys.executable, "-m", "impls.common.datasets", "prepare", "imagenet",
                           str(out / "imagenet.npz"), "--imagenet-root", str(tree)], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_index_maps_every_image_to_its_sorted_class_folder(datasets_dir, tree):
    index = imagenet.load_index(datasets_dir)
    assert index.classes == CLASSES and index.n_classes == 3 and index.root == tree.resolve()
    assert len(index.train_files) == 3 * N_TRAIN and len(index.val_files) == 3 * N_VAL   # synset.txt left out
    for files, labels in (index.split("train"), index.split("val")):
        assert all(str(f).split("/")[1] == CLASSES[y] for f, y in zip(files, labels))
        assert list(labels) == sorted(labels)                       # class-sorted file order
    meta = read_json(datasets_dir / "imagenet.json")
    assert meta["n_train"] == 21 and meta["n_val"] == 9 and meta["num_classes"] == 3 and meta["streamed"]


def test_a_missing_tree_or_index_names_the_path_and_the_layout(tmp_path, datasets_dir):
    with pytest.raises(datasets.DatasetUnavailable,
                       match=r"nowhere/train and .*nowhere/val are not directories.*Expected layout: .*/val/<class>/"):
        datasets.prepare_dataset("imagenet", tmp_path / "imagenet.npz", imagenet_root=tmp_path / "nowhere")
    assert not (tmp_path / "imagenet.npz").exists() and not (tmp_path / "imagenet.json").exists()
    with pytest.raises(datasets.DatasetUnavailable, match=r"imagenet.npz does not exist.*CREDITBENCH_IMAGENET_DIR"):
        imagenet.load_index(tmp_path)
    # an index whose tree has gone: the error names the tree, not a silent fallback
    moved = tmp_path / "moved"
    moved.mkdir()
    with np.load(datasets_dir / "imagenet.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["root"] = np.array(str(tmp_path / "gone"))
    np.savez(moved / "imagenet.npz", **arrays)
    with pytest.raises(datasets.DatasetUnavailable, match=r"gone/train.*Expected layout"):
        imagenet.load_index(moved)
    cli = subprocess.run([sys.executable, "-m", "impls.common.datasets", "prepare", "imagenet",
                          str(tmp_path / "x.npz")], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO), "CREDITBENCH_IMAGENET_DIR": str(tmp_path / "no")})
    assert cli.returncode == 2 and f"{tmp_path / 'no'}/train" in cli.stderr


def test_train_batches_shapes_dtype_normalisation_and_augmentation(datasets_dir):
    index = imagenet.load_index(datasets_dir)
    stream = imagenet.loader(index, "train", 4, 24, seed=99, workers=2)
    batches = list(stream)
    assert len(batches) == 21 // 4                               # full batches only
    x, y = batches[0]
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.int64
    # solid-colour images stay solid under crop, resize and flip: every pixel is (colour/255 - mean)/std,
    # colour = the decoded file's (JPEG may move a solid colour by a level or two; grayscale -> RGB)
    from PIL import Image

    mean, std = torch.tensor(imagenet.MEAN).view(3, 1, 1), torch.tensor(imagenet.STD).view(3, 1, 1)
    order = [i for b in stream.batch_sampler for i, _ in b]
    images = torch.cat([xb for xb, _ in batches])
    assert torch.cat([yb for _, yb in batches]).tolist() == index.train_labels[order].tolist()
    for img, i in zip(images, order):
        with Image.open(index.root / str(index.train_files[i])) as im:
            colour = np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3).mean(0)
        want = (torch.from_numpy(colour).view(3, 1, 1) / 255 - mean) / std
        assert torch.allclose(img, want.expand_as(img), atol=0.02)
    assert float(images.mean()) > -3 and float(images.std()) > 0.5    # normalised, not raw [0, 1] pixels


def test_val_batches_are_centre_crops_of_every_image_once(datasets_dir):
    index = imagenet.load_index(datasets_dir)
    for shuffle in (False, True):
        stream = imagenet.loader(index, "val", 4, 16, seed=99, workers=1, shuffle_val=shuffle)
        visits = np.concatenate([np.array([i for i, _ in b]) for b in stream.batch_sampler])
        assert sorted(visits) == list(range(9))                  # each image exactly once
        if not shuffle:
            assert list(visits) == list(range(9))                # file order
        labels = torch.cat([y for _, y in stream])
        assert labels.tolist() == index.val_labels[visits].tolist()   # in the sampler's order
    assert [len(b) for b in stream.batch_sampler] == [4, 5]      # a remainder of one joins the batch before
    again = imagenet.EvalBatches(9, 4, seed=99)
    assert np.array_equal(again.order, stream.batch_sampler.order)    # a fixed order per seed
    assert not np.array_equal(imagenet.EvalBatches(9, 4, seed=100).order, again.order)
    x, _ = next(iter(stream))
    assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32


def _order_and_pixels(index, seed, epoch, workers):
    from torchvision.transforms import functional as F

    stream = imagenet.loader(index, "train", 5, 20, seed=seed, workers=workers)
    stream.batch_sampler.set_epoch(epoch)
    order = np.concatenate([np.array([i for i, _ in b]) for b in stream.batch_sampler])
    return order, torch.cat([x for x, _ in stream]), F


def test_train_order_reshuffles_per_epoch_and_is_reproducible_from_the_seed(datasets_dir, tree):
    """Same (seed, epoch) -> same order and same crops whatever the worker count; another epoch or seed differs."""
    from PIL import Image

    # a textured image so that random crops and flips show in the pixels
    index = imagenet.load_index(datasets_dir)
    rng = np.random.default_rng(1)
    textured = tree.parent / "textured"
    for split in ("train", "val"):
        for name in CLASSES:
            (textured / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(N_TRAIN if split == "train" else 1):
                Image.fromarray(rng.integers(0, 255, (33 + i, 29, 3), dtype=np.uint8)).save(
                    textured / split / name / f"{i}.png")
    tex_dir = tree.parent / "tex_datasets"
    image_folder.prepare_image_folder_index(tex_dir / "imagenet.npz", textured)
    tex = imagenet.load_index(tex_dir)
    for idx in (index, tex):
        o1, x1, _ = _order_and_pixels(idx, 99, 1, workers=0)
        o1b, x1b, _ = _order_and_pixels(idx, 99, 1, workers=2)
        o2, x2, _ = _order_and_pixels(idx, 99, 2, workers=2)
        o3, _, _ = _order_and_pixels(idx, 100, 1, workers=0)
        assert np.array_equal(o1, o1b) and torch.equal(x1, x1b)
        assert not np.array_equal(o1, o2) and not np.array_equal(o1, o3)
        assert len(set(o1)) == len(o1) == 20                     # a permutation, 4 batches of 5
    # the same image decoded in two epochs gets different crops (augmentation is per epoch)
    o1, x1, _ = _order_and_pixels(tex, 99, 1, workers=0)
    o2, x2, _ = _order_and_pixels(tex, 99, 2, workers=0)
    common = sorted(set(o1) & set(o2))[0]
    assert not torch.equal(x1[list(o1).index(common)], x2[list(o2).index(common)])


FIRST_BATCH = """
import hashlib, sys
from impls.wide_align import imagenet
index = imagenet.load_index(sys.argv[1])
stream = imagenet.loader(index, "train", 5, 20, seed=7, workers=0)
for epoch in (1, 2):
    stream.batch_sampler.set_epoch(epoch)
    x, y = next(iter(stream))
    print(epoch, hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
"""


def test_in_process_crops_are_the_same_in_every_process(tmp_path):
    """workers=0: each sample's crop and flip come from its own seed, not from the process's torch seed."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for name in CLASSES:
            (tmp_path / "tree" / split / name).mkdir(parents=True)
            for i in range(3 if split == "train" else 1):
                Image.fromarray(rng.integers(0, 255, (31 + i, 27, 3), dtype=np.uint8)).save(
                    tmp_path / "tree" / split / name / f"{i}.png")
    image_folder.prepare_image_folder_index(tmp_path / "datasets" / "imagenet.npz", tmp_path / "tree")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.run([sys.executable, "-c", FIRST_BATCH, str(tmp_path / "datasets")], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-3000:] + runs[1].stderr[-3000:]
    first, second = (dict(line.split() for line in r.stdout.splitlines()) for r in runs)
    assert first == second and first["1"] != first["2"]


def imagenet_spec(rule="bp", seed=99, lr=1.0, width=4, depth=7, epochs=1, **hp):
    return speclib.validate_spec(dict(paper="wide_align", rule=rule, model={"arch": "allconv", "depth": depth,
                                                                            "width": width},
                                      dataset="imagenet", hparams={"lr": lr, "targets": "onehot", "image_size": 32,
                                                                   **hp},
                                      seed=seed, epochs=epochs, batch_size=5, scale="paper"))


def test_imagenet_specs_validate_and_use_the_stride_4_stem():
    from impls.wide_align.options import strides

    assert strides(imagenet_spec()) == [4, 2, 1, 2, 1, 2, 1]
    assert strides(imagenet_spec(depth=3)) == [1, 2, 2]
    with pytest.raises(SpecError, match="hparams.n_val"):
        imagenet_spec(n_val=100)
    with pytest.raises(SpecError, match="hparams.image_size"):
        imagenet_spec(image_size=4)
    with pytest.raises(SpecError, match="hparams.image_size"):
        speclib.validate_spec(dict(paper="wide_align", rule="bp", model={"arch": "allconv"}, dataset="digits",
                                   hparams={"lr": 1.0, "image_size": 32}, seed=0, epochs=1, batch_size=8,
                                   scale="smoke"))


def test_streamed_runs_do_not_depend_on_their_batch_mates(datasets_dir):
    from impls.wide_align.streaming import StreamedRuns

    # depth 3: at depth 7 a 32-px input reaches 1x1 maps whose batch-of-5 statistics amplify float32
    # rounding of the grouped conv to ~3e-5 after one epoch (same data); stacking itself is tested on digits
    specs = [imagenet_spec("alignada", seed=s, lr=lr, depth=3) for s, lr in ((99, 0.5), (100, 0.1), (99, 0.1))]
    both = StreamedRuns(specs, datasets_dir, "cpu", workers=0)
    assert both.stream_of_run == [0, 1, 0] and both.shape.size == 32 and both.shape.n_classes == 3
    alone = StreamedRuns(specs[1:2], datasets_dir, "cpu", workers=0)
    (x_both, y_both), (x_alone, y_alone) = (p._stack(next(zip(*p.train_loaders))) for p in (both, alone))
    assert x_both.shape == (5, 9, 32, 32) and torch.equal(x_both[:, 3:6], x_alone) and torch.equal(y_both[1], y_alone[0])
    assert torch.equal(x_both[:, :3], x_both[:, 6:]) and not torch.equal(x_both[:, :3], x_both[:, 3:6])
    stats, val = both.train_epoch(), both.evaluate("val")
    stats_alone, val_alone = alone.train_epoch(), alone.evaluate("val")
    assert stats["train_loss"][1] == pytest.approx(stats_alone["train_loss"][0], rel=1e-5)
    assert val["val_acc"][1] == pytest.approx(val_alone["val_acc"][0])
    assert torch.allclose(both.params["w"][2][1], alone.params["w"][2][0], rtol=1e-4, atol=1e-6)


def _write_batch(results: Path, name: str, specs: list[dict]) -> tuple[Path, list[str]]:
    runs = {speclib.run_id(s): s for s in specs}
    atomic_write_json(results / "batches" / name / "batch.json", {"paper": "wide_align", "batch_id": name,
                                                                  "runs": runs})
    return results / "batches" / name / "batch.json", list(runs)


def _cli(stage: str, batch: Path, datasets_dir: Path, *extra: str, env: dict | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CREDITBENCH_DATA_WORKERS": "2",
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "impls.wide_align", stage, str(batch), "--datasets-dir",
                           str(datasets_dir), "--platform", "cpu", *extra], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_one_epoch_through_the_train_and_evaluate_entry_points(tmp_path, datasets_dir):
    results = tmp_path / "results" / "wide_align"
    ids = []
    for rule in ("bp", "dfa"):
        batch, batch_ids = _write_batch(results, rule, [imagenet_spec(rule, lr=lr, dfa_feedback="pooled")
                                                        for lr in (1.0, 5.0)])
        ids += batch_ids
        for stage in ("train", "evaluate"):
            done = _cli(stage, batch, datasets_dir)
            assert done.returncode == 0, done.stderr[-3000:]
    for rid in ids:
        run = results / "runs" / rid
        record = read_json(run / "train.json")
        assert record["status"] == "ok" and record["runs_in_batch"] == 2
        assert record["n_train"] == 21 and record["n_val"] == 9 and record["n_test"] == 0
        assert record["steps_per_epoch"] == 4 and record["data_workers"] == 2
        metrics = pd.read_csv(run / "metrics.csv")
        assert set(metrics["split"]) == {"train", "val", "time"}
        val = metrics.query("split == 'val' and metric == 'acc'")["value"]
        assert len(val) == 2 and val.between(0, 100).all()
        final = read_json(run / "final.json")["final"]
        assert {"val_acc", "best_val_acc", "train_acc", "time_epoch"} <= set(final)
        with np.load(run / "params.npz") as p:
            assert p["w_0"].shape == (4, 3, 3, 3) and p["v"].shape == (4, 3)


def test_a_killed_streamed_job_resumes_to_identical_metrics(tmp_path, datasets_dir):
    specs = [imagenet_spec("alignzero", seed=s, lr=0.5, epochs=3) for s in (99, 100)]
    whole, ids = _write_batch(tmp_path / "a" / "wide_align", "b", specs)
    assert _cli("train", whole, datasets_dir).returncode == 0
    cut, _ = _write_batch(tmp_path / "b" / "wide_align", "b", specs)
    killed = _cli("train", cut, datasets_dir, "--checkpoint-minutes", "0", env={"CREDITBENCH_KILL_AFTER_EPOCH": "1"})
    assert killed.returncode != 0 and (cut.parent / "checkpoint.npz").exists()
    resumed = _cli("train", cut, datasets_dir, "--checkpoint-minutes", "0")
    assert resumed.returncode == 0 and "resumed from checkpoint at epoch 1" in resumed.stderr, resumed.stderr[-2000:]
    for rid in ids:
        a, b = (pd.read_csv(root / "wide_align" / "runs" / rid / "metrics.csv").query("split != 'time'")
                .reset_index(drop=True) for root in (tmp_path / "a", tmp_path / "b"))
        pd.testing.assert_frame_equal(a, b)
