"""Training batches: which tomograms a step loads, the crops drawn from each, and preparing them ahead of the step.

A step loads `train.batch_size` tomograms, drawn at random, and `RandCropByLabelClassesd` draws
`train.crops_per_volume` augmented crops from each, so its batch holds batch_size x crops_per_volume patches (the
CZII MONAI recipe the paper follows: one tomogram, 16 crops). With `train.prefetch` > 0 a background thread prepares
the next batches while the model trains on this one. It makes the same draws in the same order from the same random
streams as the inline path, so the weights are the same bit for bit; only the waiting goes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

_DONE = object()


def draw_batch(transforms, volumes: list[dict], rng: np.random.Generator, batch_size: int):
    """(image, label) CPU tensors: for each of `batch_size` tomograms drawn at random, every crop `transforms` makes
    of it (RandCropByLabelClassesd's num_samples, then the augmentations)."""
    crops = [crop for _ in range(batch_size) for crop in transforms(volumes[int(rng.integers(len(volumes)))])]
    image = torch.stack([c["image"].as_tensor() for c in crops])
    label = torch.stack([c["label"].as_tensor() for c in crops])
    return image, label


def _to_device(batch, device: torch.device):
    image, label = batch
    if device.type == "cuda":  # pinned pages copy asynchronously, overlapping the step before
        return image.pin_memory().to(device, non_blocking=True), label.pin_memory().to(device, non_blocking=True)
    return image.to(device), label.to(device)


def epoch_batches(
    transforms, volumes: list[dict], rng: np.random.Generator, steps: int, batch_size: int, device, prefetch: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The `steps` batches of one epoch on `device`, drawn in order from `rng` and the transforms' random state;
    with `prefetch` > 0, up to that many are prepared ahead in a background thread."""
    device = torch.device(device)
    if prefetch <= 0:
        for _ in range(steps):
            yield _to_device(draw_batch(transforms, volumes, rng, batch_size), device)
        return
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for _ in range(steps):
                if not put(_to_device(draw_batch(transforms, volumes, rng, batch_size), device)):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the training thread, which raises it
            put(err)

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the step failed or was interrupted: the producer stops at its next put
        stop.set()
        worker.join()
