"""TFDS builders that write a dataset from files already on this machine, without TensorFlow.

Caller: ``impls.common.tfds_data.build`` (``python -m impls.common.tfds_data prepare ...``).
Each ``*_builder(...)`` returns a ``tfds.core.DatasetBuilder`` whose ``download_and_prepare`` writes
an ``array_record`` TFDS dataset into its data dir; nothing is downloaded.

TFDS's own builders for MNIST-like datasets and ImageNet read their files through
``tf.io.gfile`` and encode images with TensorFlow, so they cannot run where TensorFlow is not
installed (the CPU environment of this project). The builders here are subclasses of TFDS's own
ones, registered under nothing (``skip_registration``) but carrying the official name, version and
features, so that ``tfds.data_source(name, data_dir=...)`` reads what they write exactly as it reads
what the official builder writes:

- ``idx_builder``: ``fashion_mnist``, ``mnist`` or ``kmnist`` from the four IDX files of a
  directory (``.gz`` or not), e.g. Debian's ``dataset-fashion-mnist`` in
  /usr/share/datasets/fashion-mnist. Same keys as TFDS's builder (the index in the file), so the
  same example order on disk.
- ``digits_builder``: ``creditbench_digits``, scikit-learn's embedded digits (8x8, pixels 0..16)
  split as the cached ``digits`` dataset (first 1300 train, 497 test); a dataset of this project,
  not of the TFDS catalogue, for smoke runs and tests of the TFDS path.
- ``imagenet_builder``: ``imagenet2012`` from the manually downloaded archives
  ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` in one directory, through TFDS's own
  example generator; only the archive reading, the validation labels (the archive's sorted file
  names against TFDS's ``validation_labels.txt``) and the repair of the 22 CMYK and 1 PNG training
  images (PIL instead of TensorFlow) are replaced.

Images are handed to TFDS as PIL images or encoded bytes, which it stores without TensorFlow.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from impls.common.datasets import DIGITS_N_TRAIN, IDX_STEMS, find_idx_files, read_idx

IDX_DATASETS = ("fashion_mnist", "mnist", "kmnist")
IMAGENET_ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "validation": "ILSVRC2012_img_val.tar"}


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def idx_builder(name: str, idx_dir: str | Path, data_dir: str | Path):
    """TFDS's ``name`` builder (fashion_mnist, mnist, kmnist) reading the IDX files of ``idx_dir``."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist

    official = {"fashion_mnist": mnist.FashionMNIST, "mnist": mnist.MNIST, "kmnist": mnist.KMNIST}[name]
    files = find_idx_files(Path(idx_dir))
    if files is None:
        raise FileNotFoundError(f"{idx_dir} does not hold the four IDX files "
                                f"({', '.join(IDX_STEMS.values())}, each .gz or not)")

    class LocalIdx(official, skip_registration=True):
        def _split_generators(self, dl_manager):
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={"images": files[f"x_{key}"],
                                                                     "labels": files[f"y_{key}"]})
                    for split, key in (("train", "train"), ("test", "test"))]

        def _generate_examples(self, images, labels):
            x, y = read_idx(images), read_idx(labels)
            for index in range(len(x)):   # the key TFDS's own builder gives: the index in the file
                yield index, {"image": _pil(x[index]), "label": int(y[index])}

    LocalIdx.name = name
    return LocalIdx(data_dir=str(data_dir), file_format="array_record")


def digits_builder(data_dir: str | Path):
    """``creditbench_digits``: scikit-learn's digits as a TFDS dataset (first 1300 train, 497 test)."""
    import tensorflow_datasets as tfds

    class CreditbenchDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description="scikit-learn's embedded 8x8 digits (pixels 0..16), split as creditbench's "
                                          "cached digits: the first 1300 images train, the other 497 test.",
                features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 1)),
                                                     "label": tfds.features.ClassLabel(num_classes=10)}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={"part": part})
                    for split, part in (("train", slice(0, DIGITS_N_TRAIN)), ("test", slice(DIGITS_N_TRAIN, None)))]

        def _generate_examples(self, part):
            from sklearn.datasets import load_digits

            bunch = load_digits()
            images, labels = bunch.images.astype(np.uint8)[part], bunch.target[part]
            for index, (image, label) in enumerate(zip(images, labels)):
                yield index, {"image": _pil(image), "label": int(label)}

    CreditbenchDigits.name = "creditbench_digits"
    return CreditbenchDigits(data_dir=str(data_dir), file_format="array_record")


def _tar_members(path: Path):
    """(name, file object) of every file in the tar at ``path``, streamed (opened when iterated)."""
    import tensorflow_datasets as tfds

    with open(path, "rb") as handle:
        yield from tfds.download.iter_archive(handle, tfds.download.ExtractMethod.TAR_STREAM)


def _rgb_jpeg(image) -> io.BytesIO:
    """A CMYK JPEG or a PNG as an RGB JPEG (PIL, quality 95), for the images TFDS's builder repairs."""
    from PIL import Image

    out = io.BytesIO()
    with Image.open(image) as im:
        im.convert("RGB").save(out, format="JPEG", quality=95)
    out.seek(0)
    return out


def imagenet_validation_labels(val_tar: Path) -> dict[str, str]:
    """Synset of each validation image: the archive's file names, sorted, against TFDS's list of
    validation labels (one synset per line, in the order of the sorted ILSVRC2012_val_* names)."""
    import tarfile

    import tensorflow_datasets as tfds

    labels = Path(tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")).read_text().split()
    with tarfile.open(val_tar, mode="r:") as tar:
        names = sorted(tar.getnames())
    if len(names) > len(labels):
        raise ValueError(f"{val_tar} holds {len(names)} files; ImageNet's validation set has {len(labels)}")
    return dict(zip(names, labels))


def imagenet_builder(manual_dir: str | Path, data_dir: str | Path):
    """TFDS's ``imagenet2012`` builder reading ``ILSVRC2012_img_{train,val}.tar`` from ``manual_dir``."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as official

    manual_dir = Path(manual_dir)
    archives = {split: manual_dir / name for split, name in IMAGENET_ARCHIVES.items()}
    missing = [str(p) for p in archives.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ImageNet archives not found: {', '.join(missing)}")

    class LocalImagenet2012(official.Builder, skip_registration=True):
        def _split_generators(self, dl_manager):
            return [
                tfds.core.SplitGenerator(name="train", gen_kwargs={"archive": _tar_members(archives["train"])}),
                tfds.core.SplitGenerator(name="validation", gen_kwargs={
                    "archive": _tar_members(archives["validation"]),
                    "validation_labels": imagenet_validation_labels(archives["validation"])}),
            ]

        def _fix_image(self, image_fname, image):
            if image_fname in official.CMYK_IMAGES or image_fname in official.PNG_IMAGES:
                return _rgb_jpeg(image)
            return image

    LocalImagenet2012.name = "imagenet2012"
    return LocalImagenet2012(data_dir=str(data_dir), file_format="array_record")
