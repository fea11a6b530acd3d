"""invert stage: the encoder, in two passes that the smooth stage sits between.

* :func:`codes`: W+ codes from the aligned face ``x2`` (``located -> Coded``):
    * ``first-frame``: each track's first aligned face, computed once and reused (the official
      video behaviour);
    * ``per-frame``: every frame's own aligned face (follows expressions, flickers unless smoothed);
    * ``smoothed``: per-frame codes here, filtered over time by the smooth stage.

  In the two per-frame modes ``code_every = N`` > 1 runs the codes pass on key faces only (every
  N-th frame, a track's first and last frame, shot changes) and interpolates the codes in between
  (:mod:`pipeline.stages.keycodes`); the smooth stage then filters a continuous curve. The codes
  pass at 256x256 costs more than the whole generator at a 128x128 crop, so this is the main
  speed-up of these modes. N = 1 encodes every face (a face without an aligned cut holds its
  track's last codes).
* :func:`features`: the first-layer and skip features of the frame crop ``x1``, paired with the
  (possibly smoothed) codes (``Coded -> Inverted``). Only what the output depends on runs (stem and
  IR-SE units 0-20).

Splitting the passes keeps the smoothing window light (codes only, no feature maps) and lets a
random-access host (the VapourSynth filter) plan the codes of a clip once and compute the features
of a single frame on demand with the same arithmetic as a linear run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.model import Latents, StyleGANEX
from pipeline.records import Coded, Inverted, Located
from pipeline.runtime.batch import batches, crop_pixels, face_images, split_back

STYLE_CODES = ("first-frame", "per-frame", "smoothed")


@dataclass(frozen=True)
class InvertConfig:
    """Options of the invert stage.

    Attributes:
        batch_size: faces per encoder call (at most).
        batch_pixels: also at most this many ``x1`` crop pixels per features call (0: no limit); big
            crops batch worse on a CPU (see :func:`pipeline.runtime.device.default_batch_pixels`).
        style_code: one of ``STYLE_CODES``.
        code_every: per-frame modes: fresh codes on every N-th frame (and a track's first and last
            frame and shot changes), interpolated in between (see the module docstring).
    """

    batch_size: int = 1
    style_code: str = "smoothed"
    batch_pixels: int = 0
    code_every: int = 1

    def __post_init__(self) -> None:
        if self.style_code not in STYLE_CODES:
            raise ValueError(f"style code mode must be one of {STYLE_CODES}, got {self.style_code!r}")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        if self.batch_pixels < 0:
            raise ValueError("batch pixels must be >= 0")
        if self.code_every < 1:
            raise ValueError("code_every must be >= 1")


def codes(items: Iterable[Located], model: StyleGANEX, cfg: InvertConfig, *,
          cut: Callable[[Located], bool] | None = None) -> Iterator[Coded]:
    """W+ codes of every face (see the module docstring for the style-code modes).

    ``cut(rec)``: True where ``rec`` starts a new shot (key codes, ``code_every`` > 1, only; called
    on every record in order; see :func:`pipeline.stages.keycodes.shot_cuts`).
    """
    if cfg.code_every > 1 and cfg.style_code != "first-frame":
        from pipeline.stages.keycodes import key_codes

        yield from key_codes(items, model, cfg.code_every, cfg.batch_size, cut=cut)
        return
    device, dtype = model.latent_avg.device, model.latent_avg.dtype
    latest: dict[int, Tensor] = {}          # track -> its codes as of the face being handed on
    with torch.inference_mode():
        for batch in batches(items, cfg.batch_size, lambda r: len(r.faces)):
            pairs = [(rec, f) for rec in batch for f in rec.faces]
            faces = [f for _, f in pairs]
            fresh = [i for i, f in enumerate(faces) if f.wants_aligned
                     and (cfg.style_code != "first-frame" or f.track_id not in latest)]
            found: dict[int, Tensor] = {}
            if fresh:
                w = model.codes(face_images([pairs[i] for i in fresh], "aligned", device, dtype))
                found = {i: w[j:j + 1] for j, i in enumerate(fresh)}
            held = []
            for i, face in enumerate(faces):      # in frame order: a face holds its track's last codes
                if i in found:
                    latest[face.track_id] = found[i]
                held.append(latest[face.track_id])
            for rec, codes in split_back(batch, held, lambda r: len(r.faces)):
                yield Coded(rec, codes)


def features(items: Iterable[Coded], model: StyleGANEX, cfg: InvertConfig) -> Iterator[Inverted]:
    """First-layer and skip features of every face's ``x1`` crop, batched per crop size.

    Crops not cut yet (the device route) are cut here from the frame on the model's device, all the
    batch's crops of one size in one warp (:func:`pipeline.runtime.batch.face_images`); so are the
    aligned faces of the codes pass."""
    device, dtype = model.latent_avg.device, model.latent_avg.dtype
    with torch.inference_mode():
        for batch in batches(items, cfg.batch_size, lambda r: len(r.located.faces), budget=cfg.batch_pixels,
                             weight=lambda r: crop_pixels(r.located.faces)):
            pairs = [(rec.located, f) for rec in batch for f in rec.located.faces]
            w_plus = [w for rec in batch for w in rec.codes]
            latents: list[Latents | None] = [None] * len(pairs)
            shapes: dict[tuple[int, int], list[int]] = {}
            for i, (_, f) in enumerate(pairs):
                shapes.setdefault(f.crop_shape, []).append(i)
            for idx in shapes.values():
                x1 = face_images([pairs[i] for i in idx], "crop", device, dtype)
                lat = model.invert(x1, w_plus=torch.cat([w_plus[i].to(device, dtype) for i in idx]))
                for j, i in enumerate(idx):
                    latents[i] = lat[j]
            for rec, lats in split_back(batch, latents, lambda r: len(r.located.faces)):
                yield Inverted(rec.located, lats)


def invert(items: Iterable[Located], model: StyleGANEX, cfg: InvertConfig) -> Iterator[Inverted]:
    """Both passes without smoothing in between: ``features(codes(items))``."""
    return features(codes(items, model, cfg), model, cfg)
