"""Bring-your-own editing directions (``--direction FILE[:STRENGTH]``).

A direction is a W+ offset of shape ``[512]`` (the same for all 18 rows) or ``[18, 512]``, saved as
a ``.npy`` or ``.pt`` file: the form InterFaceGAN, GANSpace and StyleCLIP's global directions are
published in for the FFHQ StyleGAN2 space StyleGANEX's encoder inverts into. The generate stage adds
``strength x direction`` to every face's codes exactly as an editing model adds its own direction
(after the smoothing, scaled per frame by ``--strength`` or its keyframes unless the file was given a
``:STRENGTH`` of its own, and read by the fusion blocks' editing attention where the model has it),
so an editing model's direction saved to a file and given back at strength S with the built-in edit
at 0 renders the very frames of the built-in edit at S.

Directions suit the models whose generator is the FFHQ one (inversion, the editing models, super
resolution); on toonify models they run with a warning (the toon generator was fine-tuned away
from that space).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import UsageError
from pipeline.model import StyleGANEX
from pipeline.model.arch import N_STYLES

log = logging.getLogger(__name__)

SUFFIXES = (".npy", ".pt", ".pth")
FFHQ_DATASETS = ("ffhq_encode", "ffhq_edit", "ffhq_super_resolution")


@dataclass(frozen=True, eq=False)
class Direction:
    """One direction file, loaded.

    Attributes:
        path: where it came from (for messages).
        vector: ``[18, style_dim]`` float32.
        strength: its own fixed strength, or None to follow ``--strength`` (and its keyframes).
        keyframes: its own ``((time_s, strength), ...)`` ramp (overrides ``strength``), as ``--strength``'s.
    """

    path: str
    vector: np.ndarray
    strength: float | None = None
    keyframes: tuple[tuple[float, float], ...] = ()

    def scale(self, default: float | Tensor, times: list[float]) -> float | Tensor:
        """Its strength on frames at ``times``: its own (a ``[B]`` tensor for keyframes) or ``default``."""
        if self.keyframes:
            ts, vs = zip(*self.keyframes, strict=True)
            return torch.tensor([float(np.interp(t, ts, vs)) for t in times])
        return default if self.strength is None else self.strength


def load_vector(path: str | Path, style_dim: int | None = None) -> np.ndarray:
    """The ``[18, style_dim]`` float32 direction in a ``.npy`` or ``.pt`` file (``[style_dim]`` is
    repeated over the 18 rows). ``style_dim`` None: any width (checked against the model later, by
    :func:`check_model`).

    Raises:
        UsageError: missing or unreadable file, another suffix, not a floating-point array of one
            of the two shapes, non-finite values.
    """
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise UsageError(f"direction {path}: give a .npy or .pt file")
    try:
        if p.suffix.lower() == ".npy":
            value = np.load(p, allow_pickle=False)
        else:
            value = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"direction {path}: no such file") from None
    except Exception as e:                      # noqa: BLE001 - any parse failure is the file's fault
        raise UsageError(f"direction {path}: cannot read it ({type(e).__name__}: {str(e)[:120]})") from None
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise UsageError(f"direction {path}: dtype {value.dtype} is not floating point")
        value = value.detach().float().numpy()
    if not isinstance(value, np.ndarray):
        raise UsageError(f"direction {path}: holds a {type(value).__name__}, not an array")
    if value.dtype.kind != "f":
        raise UsageError(f"direction {path}: dtype {value.dtype} is not floating point")
    dim = value.shape[-1] if style_dim is None and value.ndim else style_dim
    if value.shape not in ((dim,), (N_STYLES, dim)):
        want = style_dim or 512
        raise UsageError(f"direction {path}: shape {list(value.shape)}; expected [{want}] or [{N_STYLES}, {want}]")
    if not np.isfinite(value).all():
        raise UsageError(f"direction {path}: holds NaN or infinite values")
    return np.ascontiguousarray(np.broadcast_to(value.astype(np.float32), (N_STYLES, dim)))


def split_direction(text: str) -> tuple[str, str]:
    """``FILE[:STRENGTH]`` -> ``(FILE, STRENGTH or "")``; the file name ends at its suffix."""
    lower = text.lower()
    ends = [i + len(s) for s in SUFFIXES for i in [lower.rfind(s + ":")] if i > 0]
    return (text[:max(ends)], text[max(ends) + 1:]) if ends else (text, "")


def parse_direction(text: str, style_dim: int | None = None) -> Direction:
    """``FILE``, ``FILE:STRENGTH`` or ``FILE:T:S,T:S,...`` (keyframes, as ``--strength``) -> a loaded
    :class:`Direction`. The file name ends at its ``.npy`` / ``.pt`` suffix, so it may hold colons.
    Raises UsageError (see :func:`load_vector`)."""
    from pipeline.options import parse_strength

    path, tail = split_direction(text)
    strength, keyframes = None, ()
    if tail:
        try:
            value, keyframes = parse_strength(tail)
        except ValueError as e:
            raise UsageError(f"--direction {text!r}: {e} (after FILE:)") from None
        strength = None if keyframes else value
    return Direction(path, load_vector(path, style_dim), strength, keyframes)


def parse_directions(texts: tuple[str, ...] | list[str], style_dim: int | None = None) -> tuple[Direction, ...]:
    """Every ``--direction`` given, loaded."""
    return tuple(parse_direction(t, style_dim) for t in texts)


def check_model(model: StyleGANEX, directions: tuple[Direction, ...]) -> None:
    """Refuse directions of another width than the model's codes; warn when the model's generator
    is not the FFHQ one. Raises UsageError."""
    dim = model.arch.widths.style_dim
    for d in directions:
        if d.vector.shape[1] != dim:
            raise UsageError(f"direction {d.path}: {d.vector.shape[1]} wide; this model's codes are {dim} wide")
    dataset_type = model.opts.get("dataset_type")
    if directions and dataset_type not in FFHQ_DATASETS:
        log.warning("--direction on a %s model: directions are made for the FFHQ generator (inversion, "
                    "editing, super-resolution models); the result is at your risk", dataset_type or "unknown")


def offset(directions: tuple[Direction, ...], scale: float | Tensor, times: list[float],
           like: Tensor) -> Tensor | None:
    """``sum(strength_i x direction_i)`` as ``[1 or B, 18, D]`` on ``like``'s device, float32, for
    faces on frames at ``times``.

    ``scale``: the ``--strength`` in force (a ``[B]`` tensor for per-frame keyframes) for the
    directions without a strength of their own. Computed as :meth:`StyleGANEX.generate` scales an
    editing model's direction, so the same vector at the same strength gives the same bits.
    """
    total = None
    for d in directions:
        vec = torch.tensor(d.vector, device=like.device, dtype=torch.float32)[None]
        s = d.scale(scale, times)
        if isinstance(s, Tensor):
            s = s.to(vec).view(-1, 1, 1)
        part = vec * s
        total = part if total is None else total + part
    return total
