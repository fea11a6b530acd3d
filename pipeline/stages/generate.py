"""generate stage: latents -> stylized crops (uint8 RGB, 4x the crop size), in batches."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.model import Latents, StyleGANEX
from pipeline.records import Generated, Inverted
from pipeline.runtime.batch import batches, crop_pixels, group_by_shape, split_back, to_pixel_tensor, to_pixels
from pipeline.stages.directions import Direction, offset
from pipeline.stages.directions import check_model as check_directions


@dataclass(frozen=True)
class GenerateConfig:
    """Options of the generate stage.

    Attributes:
        batch_size: faces per generator call (at most).
        batch_pixels: also at most this many ``x1`` crop pixels per call (0: no limit).
        strength: scale of the editing direction of editing models (age, hair); ignored otherwise.
        keyframes: ``((time_s, strength), ...)`` sorted by time: the strength ramps linearly between
            them and holds before the first and after the last (overrides ``strength``).
        directions: user W+ directions added to every face's codes, scaled by their own strength or
            by ``strength`` / ``keyframes`` (see :mod:`pipeline.stages.directions`).
    """

    batch_size: int = 1
    strength: float = 1.0
    keyframes: tuple[tuple[float, float], ...] = ()
    batch_pixels: int = 0
    directions: tuple[Direction, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        if self.batch_pixels < 0:
            raise ValueError("batch pixels must be >= 0")

    def strength_at(self, t: float) -> float:
        if not self.keyframes:
            return self.strength
        times = [k[0] for k in self.keyframes]
        return float(np.interp(t, times, [k[1] for k in self.keyframes]))


def parse_keyframes(text: str) -> tuple[tuple[float, float], ...]:
    """``"0:0,2.5:1"`` -> ``((0.0, 0.0), (2.5, 1.0))``: strength keyframes as ``seconds:strength``.

    Raises:
        ValueError: malformed text or times not increasing.
    """
    frames = []
    for part in text.split(","):
        t, _, v = part.partition(":")
        try:
            frames.append((float(t), float(v)))
        except ValueError:
            raise ValueError(f"bad strength keyframe {part!r}: use seconds:strength, e.g. 0:0,2:1") from None
    if any(b[0] <= a[0] for a, b in zip(frames, frames[1:], strict=False)):
        raise ValueError("strength keyframe times must increase")
    return tuple(frames)


def generate(items: Iterable[Inverted], model: StyleGANEX, cfg: GenerateConfig, *,
             keep_on_device: bool = False) -> Iterator[Generated]:
    """Stylized crops, one per face. ``keep_on_device``: leave them on the model's device as uint8
    tensors (for the on-device paste) instead of bringing them to host memory as NumPy arrays."""
    check_directions(model, cfg.directions)
    with torch.inference_mode():
        for batch in batches(items, cfg.batch_size, lambda r: len(r.latents), budget=cfg.batch_pixels,
                             weight=lambda r: crop_pixels(r.located.faces)):
            lats = [lat for rec in batch for lat in rec.latents]
            images: list[np.ndarray | torch.Tensor | None] = [None] * len(lats)
            times = [rec.located.frame.time for rec in batch for _ in rec.latents]
            scales = torch.tensor([cfg.strength_at(t) for t in times])
            for _, idx in group_by_shape([lat.feature[0] for lat in lats]).items():
                scale = scales[idx] if cfg.keyframes else cfg.strength
                extra = {}
                if cfg.directions:
                    extra["direction"] = offset(cfg.directions, scale, [times[i] for i in idx], model.latent_avg)
                y = model.generate(Latents.cat([lats[i] for i in idx]), editing_scale=scale, **extra)
                crops = to_pixel_tensor(y) if keep_on_device else to_pixels(y)
                for j, crop in zip(idx, crops, strict=True):
                    images[j] = crop
            for rec, crops in split_back(batch, images, lambda r: len(r.latents)):
                yield Generated(rec, crops)
