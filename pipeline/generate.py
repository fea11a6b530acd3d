"""generate stage: latents -> stylized crops (uint8 RGB, 4x the crop size), in batches."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .batch import batches, group_by_shape, to_pixels
from .invert import Inverted
from .model import Latents, StyleGANEX


@dataclass(frozen=True)
class GenerateConfig:
    """``strength``: scale of the editing direction of editing models (age, hair); ignored otherwise."""

    batch_size: int = 1
    strength: float = 1.0


@dataclass(eq=False)
class Generated:
    """An inverted frame with one stylized crop per face: uint8 ``[4h, 4w, 3]`` RGB."""

    inverted: Inverted
    images: list[np.ndarray]


def generate(items: Iterable[Inverted], model: StyleGANEX, cfg: GenerateConfig) -> Iterator[Generated]:
    with torch.inference_mode():
        for batch in batches(items, cfg.batch_size, lambda r: len(r.latents)):
            lats = [lat for rec in batch for lat in rec.latents]
            images: list[np.ndarray | None] = [None] * len(lats)
            for _, idx in group_by_shape([lat.feature[0] for lat in lats]).items():
                y = model.generate(Latents.cat([lats[i] for i in idx]), editing_scale=cfg.strength)
                for j, pixels in zip(idx, to_pixels(y), strict=True):
                    images[j] = pixels
            k = 0
            for rec in batch:
                n = len(rec.latents)
                yield Generated(rec, images[k:k + n])
                k += n
