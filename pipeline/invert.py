"""invert stage: face crops -> latents (W+ codes, first-layer feature, skip features), in batches.

Style codes (the W+ rows) come from the aligned face ``x2``:
    * ``first-frame``: each track's first aligned face, computed once and reused (the official
      video behaviour);
    * ``per-frame``: every frame's own aligned face (follows expressions, flickers unless smoothed);
    * ``smoothed``: per-frame codes here, filtered over time by the smooth stage.
The ``x1`` pass only runs what the output depends on (stem and IR-SE units 0-20).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .batch import batches, group_by_shape, to_images
from .locate import Located
from .model import Latents, StyleGANEX

STYLE_CODES = ("first-frame", "per-frame", "smoothed")


@dataclass(frozen=True)
class InvertConfig:
    batch_size: int = 1
    style_code: str = "smoothed"

    def __post_init__(self) -> None:
        if self.style_code not in STYLE_CODES:
            raise ValueError(f"style code mode must be one of {STYLE_CODES}, got {self.style_code!r}")


@dataclass(eq=False)
class Inverted:
    """A located frame with one :class:`Latents` (batch of 1) per face, in ``located.faces`` order."""

    located: Located
    latents: list[Latents]


def invert(items: Iterable[Located], model: StyleGANEX, cfg: InvertConfig) -> Iterator[Inverted]:
    device, dtype = model.latent_avg.device, model.latent_avg.dtype
    track_codes: dict[int, Tensor] = {}
    with torch.inference_mode():
        for batch in batches(items, cfg.batch_size, lambda r: len(r.faces)):
            faces = [f for rec in batch for f in rec.faces]
            # W+ codes: one [1, 18, D] per face
            fresh = [i for i, f in enumerate(faces) if f.aligned is not None
                     and (cfg.style_code != "first-frame" or f.track_id not in track_codes)]
            codes: dict[int, Tensor] = {}
            if fresh:
                w = model.codes(to_images([faces[i].aligned for i in fresh], device, dtype))
                for j, i in enumerate(fresh):
                    codes[i] = w[j:j + 1]
                    track_codes.setdefault(faces[i].track_id, w[j:j + 1])
            for i, f in enumerate(faces):
                if i not in codes:
                    codes[i] = track_codes[f.track_id]
            # first-layer and skip features, batched per crop size
            latents: list[Latents | None] = [None] * len(faces)
            for _, idx in group_by_shape([f.pixels for f in faces]).items():
                x1 = to_images([faces[i].pixels for i in idx], device, dtype)
                lat = model.invert(x1, w_plus=torch.cat([codes[i] for i in idx]))
                for j, i in enumerate(idx):
                    latents[i] = lat[j]
            k = 0
            for rec in batch:
                n = len(rec.faces)
                yield Inverted(rec, latents[k:k + n])
                k += n
