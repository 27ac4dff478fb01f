"""ImageNet through TFDS (data.loader: {imagenet: tfds}) on a tiny fake ILSVRC-2012 the tests write:
the two archives users download (ILSVRC2012_img_train.tar of per-class tars, ILSVRC2012_img_val.tar), built
into a TFDS ``imagenet2012`` dataset by the project's TF-free builder, then streamed by
``impls.two_routes.imagenet_tfds``. Skipped, with the reason, where the optional TFDS extra is absent."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TFDS_MISSING

pytest.importorskip("tensorflow_datasets", reason=TFDS_MISSING)
pytest.importorskip("grain", reason=TFDS_MISSING)
from impls.common import tfds_data  # noqa: E402
from impls.two_routes import imagenet, imagenet_transforms  # noqa: E402
from impls.two_routes.imagenet_tfds import TfdsImageNet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYNSETS = ("n01440764", "n01443537", "n01484850")   # labels 0, 1, 2 of TFDS's imagenet2012
N_TRAIN_PER_CLASS, N_VAL = 8, 6


def _jpeg(rng, mean: float) -> bytes:
    from PIL import Image

    h, w = rng.integers(24, 56, size=2)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rng.normal(mean, 40, (h, w, 3)), 0, 255).astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archives(folder: Path) -> dict[str, bytes]:
    """ILSVRC2012_img_train.tar (one inner <synset>.tar per class) and ILSVRC2012_img_val.tar, as
    image-net.org ships them, with a few random JPEGs; returns every image's bytes by file name."""
    rng, images = np.random.default_rng(0), {}
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, synset in enumerate(SYNSETS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for i in range(N_TRAIN_PER_CLASS):
                    images[f"{synset}_{i}.JPEG"] = _jpeg(rng, 60 + 60 * c)
                    _add(tar, f"{synset}_{i}.JPEG", images[f"{synset}_{i}.JPEG"])
            _add(outer, f"{synset}.tar", inner.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(1, N_VAL + 1):
            images[f"ILSVRC2012_val_{i:08d}.JPEG"] = _jpeg(rng, 128)
            _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", images[f"ILSVRC2012_val_{i:08d}.JPEG"])
    return images


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    """(TFDS data dir with imagenet2012 built from the fake archives, the index the dataset rule writes, images)."""
    root = tmp_path_factory.mktemp("fake-imagenet")
    images = write_archives(root / "manual")
    tfds_data.build("imagenet", root / "tfds", manual_dir=root / "manual")
    tfds_data.prepare_imagenet_index(root / "datasets" / "imagenet.npz", root / "tfds")
    index = dict(np.load(root / "datasets" / "imagenet.npz", allow_pickle=False))
    return root, index, images


def test_builder_reads_both_archives_with_tfds_labels(fake_imagenet):
    import tensorflow_datasets as tfds

    root, index, images = fake_imagenet
    assert int(index["n_train"]) == 3 * N_TRAIN_PER_CLASS and int(index["n_val"]) == N_VAL
    assert list(index["classes"][:3]) == list(SYNSETS) and len(index["classes"]) == 1000
    source = tfds.data_source("imagenet2012", data_dir=str(root / "tfds"), split="train",
                              decoders={"image": tfds.decode.SkipDecoding()})
    for record in source:
        name = record["file_name"].decode()
        assert record["image"] == images[name] and index["classes"][record["label"]] == name.split("_")[0]
    val = tfds.data_source("imagenet2012", data_dir=str(root / "tfds"), split="validation")
    expected = dict(zip(sorted(n for n in images if n.startswith("ILSVRC")),
                        Path(tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")).read_text().split()))
    assert {r["file_name"].decode(): index["classes"][r["label"]] for r in val} == expected


def test_val_images_equal_the_torchvision_path(fake_imagenet):
    """Resize of the short side + centre crop + mean/std: byte for byte what the torchvision stream gives."""
    from PIL import Image

    _, _, images = fake_imagenet
    for size in (16, 21):
        reference = imagenet.transforms(False, size)
        for data in images.values():
            with Image.open(io.BytesIO(data)) as im:
                ours = imagenet_transforms.val_image(im.convert("RGB"), size)
                theirs = (np.asarray(reference(im.convert("RGB")), np.float32).transpose(1, 2, 0) - imagenet.MEAN) / imagenet.STD
            assert ours.dtype == np.float32 and np.array_equal(ours, theirs)


def test_train_crops_match_torchvision_box_for_box():
    """For the same box the crop, resize and flip equal torchvision's; the boxes keep its area and aspect bounds."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for _ in range(50):
        box = imagenet_transforms.crop_box(rng, *image.size)
        top, left, h, w = box
        assert 0 <= top <= 37 - h and 0 <= left <= 53 - w
        assert 0.08 * 37 * 53 * 0.8 <= h * w <= 37 * 53 and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
        ours = imagenet_transforms.resized_crop(image, box, 16)
        theirs = F.resized_crop(image, top, left, h, w, [16, 16], InterpolationMode.BILINEAR)
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
        assert np.array_equal(np.asarray(ours.transpose(Image.FLIP_LEFT_RIGHT)), np.asarray(F.hflip(theirs)))


def _batches(stream, *args, **kwargs):
    return [tuple(np.asarray(a) for a in b) for b in stream.train(*args, **kwargs)]


def test_train_stream_depends_on_seed_and_epoch_only_and_resumes_mid_epoch(fake_imagenet):
    _, index, _ = fake_imagenet
    threads, inline = TfdsImageNet(index, 16, workers=2), TfdsImageNet(index, 16, workers=0)
    epoch1 = _batches(threads, 4, 3, 1)
    assert len(epoch1) == 3 * N_TRAIN_PER_CLASS // 4 and epoch1[0][0].shape == (4, 16, 16, 3)
    for a, b in zip(epoch1, _batches(inline, 4, 3, 1)):          # grain threads change nothing
        assert all(np.array_equal(u, v) for u, v in zip(a, b))
    resumed = _batches(inline, 4, 3, 1, start_step=4)             # a run restarted at step 4 sees steps 4, 5
    assert all(np.array_equal(u, v) for a, b in zip(epoch1[4:], resumed) for u, v in zip(a, b))
    epoch2 = _batches(inline, 4, 3, 2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch1, epoch2))   # reshuffled per epoch
    labels = np.concatenate([b[1] for b in epoch1])
    assert sorted(np.bincount(labels)) == [N_TRAIN_PER_CLASS] * 3 and abs(float(np.mean([b[0].mean() for b in epoch1]))) < 3


def test_two_hosts_read_disjoint_halves_of_the_same_global_batches(fake_imagenet):
    _, index, _ = fake_imagenet
    whole = _batches(TfdsImageNet(index, 16, 0), 4, 5, 1)
    halves = [_batches(TfdsImageNet(index, 16, 0, p, 2), 4, 5, 1) for p in (0, 1)]
    for step, full in enumerate(whole):
        for k in range(3):
            assert np.array_equal(np.concatenate([halves[0][step][k], halves[1][step][k]]), full[k])


def test_validation_counts_every_image_once_across_hosts(fake_imagenet):
    _, index, _ = fake_imagenet
    parts = [list(TfdsImageNet(index, 16, 1, p, 2).val(4)) for p in (0, 1)]
    assert [len(p) for p in parts] == [2, 2] and all(b[0].shape == (2, 16, 16, 3) for p in parts for b in p)
    masks = np.concatenate([np.concatenate([parts[0][s][2], parts[1][s][2]]) for s in range(2)])
    labels = np.concatenate([np.concatenate([parts[0][s][1], parts[1][s][1]]) for s in range(2)])[masks > 0]
    whole = [r[2] for r in TfdsImageNet(index, 16, 0).val(8)]
    assert masks.sum() == N_VAL and np.array_equal(labels, np.concatenate([b[1] for b in TfdsImageNet(index, 16, 0).val(8)])[np.concatenate(whole) > 0])


def test_official_builder_writes_the_same_examples(fake_imagenet, tmp_path):
    """TFDS's own imagenet2012 builder (it needs TensorFlow) and the project's TF-free one write the same
    examples from the same archives."""
    pytest.importorskip("tensorflow", reason="TFDS's own imagenet2012 builder needs TensorFlow, which the extra leaves out")
    import tensorflow_datasets as tfds

    root, _, _ = fake_imagenet
    builder = tfds.builder("imagenet2012", data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
    for split in ("train", "validation"):
        ours, theirs = (tfds.data_source("imagenet2012", data_dir=str(d), split=split,
                                         decoders={"image": tfds.decode.SkipDecoding()}) for d in (root / "tfds", tmp_path))
        assert [dict(r) for r in ours] == [dict(r) for r in theirs]


def _imagenet_batch(where: Path) -> tuple[Path, str]:
    """The batch file (under where/results) of one small run (CIFAR-style ResNet-8 of width 2 on 16 px crops,
    batch 8, 1 epoch: the ImageNet program, not the ImageNet model) on the fake ImageNet through TFDS, and
    the run's id."""
    from impls.common import specs

    spec = specs.validate_spec({
        "paper": "two_routes", "rule": "sa", "dataset": "imagenet", "seed": 0, "epochs": 1, "batch_size": 8,
        "scale": "paper", "data": {"loader": "tfds"},
        "model": {"arch": "resnet", "stem": "cifar", "depth": 8, "width": 2, "image_size": 16},
        "hparams": {"lr": 0.1, "warmup_epochs": 0.0, "decay_epochs": [], "metric_every": 10}})
    rid = specs.run_id(spec)
    batch = where / "results" / "two_routes" / "batches" / "b0" / "batch.json"
    batch.parent.mkdir(parents=True)
    batch.write_text(json.dumps({"paper": "two_routes", "batch_id": "b0", "runs": {rid: spec}}))
    return batch, rid


@pytest.mark.slow
def test_one_epoch_over_two_processes_scores_every_val_image_once(fake_imagenet, tmp_path):
    """The two_routes ImageNet program through TFDS as on a 2-host slice: two processes of 2 CPU devices
    joined on 127.0.0.1, each reading half of every batch of 8 (each writes its records to a folder of its
    own here); both record the same metrics, 4 devices, and the 6 validation images scored once."""
    import pandas as pd

    from tests.test_multihost import _free_port

    root, _, _ = fake_imagenet
    port, procs, runs = _free_port(), [], []
    for p in (0, 1):
        batch, rid = _imagenet_batch(tmp_path / f"host{p}")
        runs.append(tmp_path / f"host{p}" / "results" / "two_routes" / "runs" / rid)
        env = {**os.environ, "PYTHONPATH": str(REPO), "CREDITBENCH_DATA_WORKERS": "2",
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CREDITBENCH_DISTRIBUTED": "1",
               "CREDITBENCH_COORDINATOR": f"127.0.0.1:{port}", "CREDITBENCH_NUM_PROCESSES": "2",
               "CREDITBENCH_PROCESS_ID": str(p)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "impls.two_routes", "train", str(batch), "--datasets-dir", str(root / "datasets"),
             "--platform", "cpu", "--threads", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    for run in runs:
        record = json.loads((run / "train.json").read_text())
        assert record["status"] == "ok" and (record["devices"], record["processes"], record["loader"]) == (4, 2, "tfds")
        assert record["val_images_scored"] == N_VAL and record["steps_per_epoch"] == 3
    pd.testing.assert_frame_equal(*(pd.read_csv(run / "metrics.csv") for run in runs))
