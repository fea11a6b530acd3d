"""StyleGANEX = encoder + generator + the checkpoint's ``latent_avg`` (and ``editing_w``).

Public operations (inputs float NCHW in [-1, 1]; ``H, W`` multiples of 8):

* :meth:`StyleGANEX.invert` image -> :class:`Latents` (W+ codes, first-layer feature, skip features)
* :meth:`StyleGANEX.generate` :class:`Latents` -> image ``[B, 3, 4H, 4W]``, unclamped
* :meth:`StyleGANEX.stylize` = ``generate(invert(...))``

They reproduce the official forward ``pSp(x1, x2, zero_noise=True, resize=False,
use_skip=opts.use_skip, editing_w=editing_w[0:1] * editing_scale)`` without its waste: the ``x1``
pass stops after IR-SE unit 20 when ``x2`` supplies the codes, and codes of a repeated ``x2`` can be
computed once with :meth:`StyleGANEX.codes` and passed back in.

Memory layout: on a CPU the ``x1`` pass and the generator run channels-last (NHWC). oneDNN then
convolves without re-laying out every activation on the way in and out (measured at a 128x128 crop,
batch 4, 2 threads: generator 0.45 -> 0.37 s per frame, encoder features 0.064 -> 0.057 s). Results
match the NCHW run to about 5e-6. Outputs come back channels-last; they are ordinary tensors of the
same shape. On CUDA the layout is left as given (the CUDA kernels read NCHW).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.model.arch import N_STYLES, Arch
from pipeline.model.encoder import Encoder
from pipeline.model.generator import Generator


@dataclass
class Latents:
    """What the generator needs for a batch of frames.

    Attributes:
        w_plus: ``[B, 18, style_dim]`` W+ codes with ``latent_avg`` added.
        feature: ``[B, C, H/8, W/8]`` first-layer feature of ``x1``.
        skips: the 7 skip features of ``x1`` (None for models without skip connections).
    """

    w_plus: Tensor
    feature: Tensor
    skips: list[Tensor] | None = None

    def __len__(self) -> int:
        return self.feature.shape[0]

    def __getitem__(self, index: int | slice) -> Latents:
        sl = slice(index, index + 1) if isinstance(index, int) else index
        skips = None if self.skips is None else [s[sl] for s in self.skips]
        return Latents(self.w_plus[sl], self.feature[sl], skips)

    @staticmethod
    def cat(parts: Sequence[Latents]) -> Latents:
        """Concatenate along the batch."""
        skips = None
        if parts[0].skips is not None:
            skips = [torch.cat([p.skips[i] for p in parts]) for i in range(len(parts[0].skips))]
        return Latents(torch.cat([p.w_plus for p in parts]), torch.cat([p.feature for p in parts]), skips)

    def to(self, *args: Any, **kwargs: Any) -> Latents:
        skips = None if self.skips is None else [s.to(*args, **kwargs) for s in self.skips]
        return Latents(self.w_plus.to(*args, **kwargs), self.feature.to(*args, **kwargs), skips)


def cpu_layout(x: Tensor) -> Tensor:
    """``x`` in the layout the model computes in on its device: channels-last on a CPU, else as is."""
    if x.device.type == "cpu" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class StyleGANEX(nn.Module):
    """A loaded StyleGANEX model. Build it with :func:`pipeline.load_model`.

    Attributes:
        arch: the architecture.
        opts: the checkpoint's options (plain dict, read-only use).
        latent_avg: ``[18, style_dim]`` buffer added to every code.
        editing_w: ``[N, 18, style_dim]`` editing direction buffer, or None.
    """

    def __init__(self, arch: Arch, opts: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.opts = dict(opts or {})
        self.encoder = Encoder(arch)
        self.decoder = Generator(arch)
        self.register_buffer("latent_avg", torch.zeros(N_STYLES, arch.widths.style_dim), persistent=False)
        self.register_buffer("editing_w", None, persistent=False)

    @property
    def is_editing(self) -> bool:
        """True for the editing models (age, hair), which carry an ``editing_w`` direction."""
        return self.editing_w is not None

    def _check(self, x: Tensor, name: str, multiple: int = 8) -> Tensor:
        if x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{name} must be a float NCHW tensor, got {tuple(x.shape)} {x.dtype}")
        if x.shape[1] not in (3, self.arch.input_nc):
            raise ValueError(f"{name} has {x.shape[1]} channels; this model takes 3 or {self.arch.input_nc}")
        if multiple and (x.shape[2] % multiple or x.shape[3] % multiple):
            raise ValueError(f"{name} is {x.shape[2]}x{x.shape[3]}; height and width must be multiples of "
                             f"{multiple}")
        p = self.latent_avg
        return x.to(device=p.device, dtype=p.dtype)

    def codes(self, x2: Tensor) -> Tensor:
        """W+ codes of the style image(s) ``x2`` [B, C, h, w] (any size): ``[B, 18, style_dim]``."""
        x2 = self._check(x2, "x2", multiple=0)
        return self.encoder.codes(x2) + self.latent_avg

    def invert(self, x1: Tensor, x2: Tensor | None = None, w_plus: Tensor | None = None) -> Latents:
        """Image(s) -> :class:`Latents`.

        Args:
            x1: ``[B, C, H, W]`` frame crops in [-1, 1], ``H, W`` multiples of 8.
            x2: ``[B or 1, C, h, w]`` style images the codes come from (the aligned face); a batch of 1
                is shared by all frames. None (and no ``w_plus``): the codes come from ``x1``.
            w_plus: ``[B or 1, 18, style_dim]`` precomputed :meth:`codes`, instead of ``x2``.
        """
        x1 = cpu_layout(self._check(x1, "x1"))
        with_skips = self.arch.use_skip
        if w_plus is None and x2 is None:
            f, skips, codes = self.encoder.features_and_codes(x1, with_skips)
            w_plus = codes + self.latent_avg
        else:
            f, skips = self.encoder.features(x1, with_skips)
            if w_plus is None:
                w_plus = self.codes(x2)
        if w_plus.shape[0] not in (1, x1.shape[0]):
            raise ValueError(f"codes for {w_plus.shape[0]} images given for a batch of {x1.shape[0]}")
        return Latents(w_plus.expand(x1.shape[0], -1, -1), f, skips)

    def generate(self, latents: Latents, editing_scale: float | Tensor = 1.0,
                 noise: Sequence[Tensor | None] | None = None, direction: Tensor | None = None) -> Tensor:
        """:class:`Latents` -> ``[B, 3, 4H, 4W]`` RGB, unclamped.

        ``editing_scale`` multiplies the editing direction of editing models (sign as in the official
        video script: positive = the direction as trained); a ``[B]`` tensor gives each frame its own
        scale. It is ignored by other models. ``direction``: a further ``[1 or B, 18, style_dim]``
        W+ offset (already scaled), added and read by the editing attention as the built-in one is.
        """
        editing_w = None
        if self.editing_w is not None:
            if isinstance(editing_scale, Tensor):
                editing_scale = editing_scale.to(self.editing_w).view(-1, 1, 1)
            editing_w = self.editing_w[0:1] * editing_scale
        if direction is not None:
            editing_w = direction if editing_w is None else editing_w + direction
        fusion = getattr(self.encoder, "fusion", None)
        skips = None if latents.skips is None else [cpu_layout(s) for s in latents.skips]
        return self.decoder(latents.w_plus, cpu_layout(latents.feature), skips, fusion, editing_w, noise)

    def stylize(self, x1: Tensor, x2: Tensor | None = None, editing_scale: float = 1.0) -> Tensor:
        """``generate(invert(x1, x2), editing_scale)``."""
        return self.generate(self.invert(x1, x2), editing_scale)

    def forward(self, x1: Tensor, x2: Tensor | None = None, editing_scale: float = 1.0) -> Tensor:
        return self.stylize(x1, x2, editing_scale)
