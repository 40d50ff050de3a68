"""Images decoded and resized once for training: uint8 arrays at the training size, held in memory when the set
fits under a bound (else read again per batch, said so), augmented a whole batch at a time.

An image is opened the way the device runtime opens it (:func:`edgetransfer.images.to_rgb`: EXIF orientation,
grey, palette, alpha, 16-bit) and resized with the runtime's own steps (shorter side to ``pre.resize``, centre
``pre.crop``), so evaluation here scores what a device app feeds the model. A JPEG far larger than needed is
decoded at a reduced scale (Pillow's draft mode: a 6000x4000 photo costs a few MB, not 72 MB) and then resized.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from edgetransfer import console
from edgetransfer.card import Preprocessing

if TYPE_CHECKING:
    import torch

    from edgetransfer.data import Sample

# decoded training/validation/test images kept in memory up to this many bytes (2,000 images at 96 px: 55 MB)
CACHE_LIMIT_MB = 2048  # EDGETRANSFER_CACHE_MB sets it (read when a set is decoded: cache_limit_mb)


def cache_limit_mb() -> int:
    """EDGETRANSFER_CACHE_MB as a whole number of MB (0: never cache), else :data:`CACHE_LIMIT_MB`; a value that is
    no such number is a one-line error (``2G`` was a ValueError traceback at import)."""
    from edgetransfer.errors import UsageError

    given = os.environ.get("EDGETRANSFER_CACHE_MB")
    if given is None or not given.strip():
        return CACHE_LIMIT_MB
    try:
        value = int(given.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"EDGETRANSFER_CACHE_MB={given!r}: give the decoded-image cache's size in MB, e.g. 4096")
    return value


# Pillow releases the GIL while it decodes and resizes: on 2 cores, 2 threads took decoding 408 images of 28-640 px at
# 96 px from 0.37 s to 0.26 s, 250 photographs at 224 px from 0.52 s to 0.30 s
MAX_DECODE_THREADS = 4


def decode_threads(workers: int | None = None) -> int:
    """Threads decoding images: ``workers`` when given (0: the calling thread), else one per usable core, at most
    :data:`MAX_DECODE_THREADS`."""
    from edgetransfer.machine import usable_cores

    return min(MAX_DECODE_THREADS, usable_cores()) if workers is None else workers


def decode(path, pre: Preprocessing) -> np.ndarray:
    """One image file as the (crop, crop, 3) uint8 array the evaluation transform starts from: the device
    runtime's own steps (:func:`edgetransfer.images.open_image`, then :func:`~edgetransfer.images.resize_and_crop`)."""
    from edgetransfer.images import open_image, resize_and_crop

    return resize_and_crop(open_image(path, resize=pre.resize), pre)


class Decoded:
    """``samples`` at the training size: in memory as one (N, crop, crop, 3) uint8 array when it fits under
    ``limit_mb``, else decoded again for every batch (``cached`` says which); on :func:`decode_threads` threads."""

    def __init__(
        self,
        samples: tuple[Sample, ...],
        pre: Preprocessing,
        *,
        name: str = "",
        limit_mb: int | None = None,
        workers: int | None = None,
    ):
        self.samples, self.pre, self.workers = tuple(samples), pre, decode_threads(workers)
        self.nbytes = len(self.samples) * pre.crop * pre.crop * 3
        limit = cache_limit_mb() if limit_mb is None else limit_mb
        self.cached = self.nbytes <= limit * 2**20
        self.pixels: np.ndarray | None = None
        if self.cached and self.samples:
            self.pixels = np.empty((len(self.samples), pre.crop, pre.crop, 3), np.uint8)
            with console.progress() as bar:
                label = f"decoding {name or 'images'} once at {pre.crop} px"
                task = bar.add_task(label, total=len(self.samples), status="")
                for start in range(0, len(self.samples), 64):
                    indices = range(start, min(start + 64, len(self.samples)))
                    self.pixels[start : indices.stop] = self._decode(indices)
                    bar.update(task, advance=len(indices), status="")
        elif self.samples:
            size = self.nbytes / 2**20
            why = (  # (it said "0 MB decoded exceed the 0 MB cache", and "every epoch" of test images read once)
                "EDGETRANSFER_CACHE_MB=0"
                if limit == 0
                else f"{size:.{1 if size < 10 else 0}f} MB decoded, over the {limit} MB cache (EDGETRANSFER_CACHE_MB)"
            )
            console.err.print(
                f"[yellow]note: the {name or 'images'} ({len(self.samples)} at {pre.crop} px) are not kept in "
                f"memory ({why}): decoded from their files each time they are read[/]"
            )

    def _decode(self, indices) -> np.ndarray:
        """The images at ``indices`` decoded from their files, on ``workers`` threads (Pillow releases the GIL)."""
        paths = [self.samples[int(i)].path for i in indices]
        if self.workers > 0 and len(paths) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.workers) as pool:
                return np.stack(list(pool.map(lambda path: decode(path, self.pre), paths)))
        return np.stack([decode(path, self.pre) for path in paths])

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self, indices) -> torch.Tensor:
        import torch

        return torch.tensor([self.samples[int(i)].label for i in indices], dtype=torch.long)

    def uint8(self, indices) -> torch.Tensor:
        """The images at ``indices`` as a (B, 3, crop, crop) uint8 tensor in channels-last memory."""
        import torch

        if self.pixels is not None:
            array = self.pixels[np.asarray(indices, dtype=np.int64)]
        else:
            array = self._decode(indices)
        return torch.from_numpy(array).permute(0, 3, 1, 2)  # NHWC memory seen as NCHW: channels-last


def normalize(images: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 (or 0..1 float) images -> the model's float input (scale, mean, std), keeping channels-last."""
    import torch

    x = images.float() * pre.scale if images.dtype == torch.uint8 else images
    mean = torch.tensor(pre.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(images: torch.Tensor, pre: Preprocessing, *, kind: str = "light", hflip: bool = False) -> torch.Tensor:
    """A batch of uint8 images augmented at once (torch's global RNG): for any ``kind`` but ``none`` a random
    resized crop (70-100 % of the area, aspect 0.85-1.15, one ``grid_sample``), optional horizontal flips, for
    ``light`` a mild brightness/contrast/saturation jitter (+-20 %), for ``trivial``/``randaugment`` torchvision's
    automatic augmentation per image. Returns the normalised float batch."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    if kind in ("trivial", "randaugment"):
        from torchvision.transforms import v2

        auto = v2.TrivialAugmentWide() if kind == "trivial" else v2.RandAugment()
        images = torch.stack([auto(image.contiguous()) for image in images])
    x = images.float() / 255.0
    flips = torch.ones(n)
    if hflip:
        flips = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    if kind != "none" or hflip:
        area = torch.empty(n).uniform_(0.7, 1.0) if kind != "none" else torch.ones(n)
        ratio = torch.exp(torch.empty(n).uniform_(np.log(0.85), np.log(1.15))) if kind != "none" else torch.ones(n)
        sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        tx, ty = (torch.rand(n) * 2 - 1) * (1 - sx), (torch.rand(n) * 2 - 1) * (1 - sy)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flips, tx, sy, ty
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if kind == "light":
        b, c, s = (torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2) for _ in range(3))
        x = x * b
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0, 1)
        x = (x - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = ((x - grey) * s + grey).clamp(0, 1)
    return normalize(x, pre)


def score(model, images: Decoded, device: str, *, dtype=None, batch_size: int = 128):
    """Top-1 accuracy, predicted classes and mean cross-entropy of ``model`` on decoded ``images``."""
    import torch

    if not len(images):
        return float("nan"), [], float("nan")
    model.eval()
    predictions: list[int] = []
    loss_sum = 0.0
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
        for start in range(0, len(images), batch_size):
            indices = range(start, min(start + batch_size, len(images)))
            labels = images.labels(indices).to(device)
            logits = model(normalize(images.uint8(indices), images.pre).to(device)).float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            predictions += logits.argmax(1).tolist()
    correct = sum(int(p == s.label) for p, s in zip(predictions, images.samples, strict=True))
    return correct / len(images), predictions, loss_sum / len(images)
