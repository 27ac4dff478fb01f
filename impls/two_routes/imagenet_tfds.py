"""ImageNet for two_routes from TFDS (``imagenet2012`` in a TFDS data dir, config ``data.loader: tfds``),
decoded and augmented by grain worker threads, each host reading its own share of every global batch.

Caller: ``impls.two_routes.imagenet_program.ImageNetProgram`` when the ImageNet index it is given
(``resources/datasets/imagenet.npz``, written by ``impls.common.tfds_data.prepare_imagenet_index``)
names the TFDS loader. The torchvision stream it replaces is ``impls.two_routes.imagenet``.

- Source: ``tfds.data_source`` over the array_record dataset, the JPEG bytes left undecoded by TFDS;
  PIL decodes them (no TensorFlow anywhere).
- Order: ``impls.common.host_shards``: one permutation per (seed, epoch), global batches of
  ``batch_size`` (the last partial one dropped), this process's contiguous slice of each; validation
  in the dataset's order, every image once (last global batch padded, mask 0 on the padding).
- Augmentation: ``impls.two_routes.imagenet_transforms``; the random draws of an example come from
  ``SeedSequence([seed, epoch, position in the epoch, AUGMENT_STREAM])``.

So the batches of an epoch are a function of (seed, epoch) alone -- not of the number of worker
threads, of processes, or of where the stream was started: ``train(..., start_step=k)`` yields what
an uninterrupted stream yields from step k on. grain keeps the order of its output whatever its
threads do.
"""
from __future__ import annotations

import io

import numpy as np

from impls.common import host_shards
from impls.two_routes.imagenet import AUGMENT_STREAM
from impls.two_routes.imagenet_transforms import train_image, val_image


class TfdsImageNet:
    """The train and validation streams of one TFDS ``imagenet2012`` index, for one process of
    ``process_count``; each batch is this process's (x NHWC float32, y int32, mask float32)."""

    def __init__(self, index: dict, image_size: int, workers: int, process_index: int = 0, process_count: int = 1):
        self.data_dir, self.name = str(index["data_dir"]), str(index["tfds_name"])
        self.classes = list(index["classes"])
        self.n_train, self.n_val = int(index["n_train"]), int(index["n_val"])
        self.size, self.workers = image_size, workers
        self.process_index, self.process_count = process_index, process_count
        self._sources = {}

    def _source(self, split: str):
        if split not in self._sources:
            from impls.common.tfds_data import require_tfds

            tfds = require_tfds()
            self._sources[split] = tfds.data_source(self.name, data_dir=self.data_dir, split=split,
                                                    decoders={"image": tfds.decode.SkipDecoding()})
        return self._sources[split]

    def _example(self, split: str, index: int):
        from PIL import Image

        record = self._source(split)[index]
        with Image.open(io.BytesIO(record["image"])) as image:
            return image.convert("RGB"), np.int32(record["label"])

    def first(self, batch_size: int, seed: int):
        """This process's part of epoch 0's first training batch (decoded here, without threads)."""
        return next(self.train(batch_size, seed, 0, workers=0))

    def train(self, batch_size: int, seed: int, epoch: int, start_step: int = 0, workers: int | None = None):
        """This process's part of every training batch of epoch ``epoch`` from ``start_step`` on."""
        indices, positions = host_shards.train_slices(self.n_train, batch_size, seed, epoch, self.process_index,
                                                      self.process_count, start_step)

        def load(element):
            index, position = element
            image, label = self._example("train", index)
            rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, position, AUGMENT_STREAM]))
            return train_image(image, self.size, rng), label, np.float32(1)

        return self._batches(list(zip(indices.ravel().tolist(), positions.ravel().tolist())), load, indices.shape[1],
                             self.workers if workers is None else workers)

    def val(self, batch_size: int):
        """This process's part of every validation batch; each image is in exactly one batch of one process."""
        indices, mask = host_shards.eval_slices(self.n_val, batch_size, self.process_index, self.process_count)

        def load(element):
            index, keep = element
            if not keep:
                return np.zeros((self.size, self.size, 3), np.float32), np.int32(0), np.float32(0)
            image, label = self._example("validation", index)
            return val_image(image, self.size), label, np.float32(1)

        return self._batches(list(zip(indices.ravel().tolist(), mask.ravel().tolist())), load, indices.shape[1],
                             self.workers)

    @staticmethod
    def _batches(elements: list, load, local_batch: int, workers: int):
        """(x, y, mask) batches of ``local_batch`` loaded elements, in order; grain threads when workers > 0."""
        if workers <= 0:
            for start in range(0, len(elements), local_batch):
                yield tuple(np.stack(column) for column in zip(*map(load, elements[start:start + local_batch])))
            return
        import grain

        dataset = grain.MapDataset.source(elements).map(load).batch(local_batch)
        options = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=2 * local_batch)
        yield from dataset.to_iter_dataset(options)
