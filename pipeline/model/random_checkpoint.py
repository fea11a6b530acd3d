"""Checkpoints of seeded random weights in the official file layout.

For tests, benchmarks and smoke runs only: the weights are random, so the model stylizes nothing
(its output is coloured noise shaped by the architecture). The layout, key names, shapes, dtypes and
options are those of the released files (spec sections 2 and 3), including the constant buffers
and noise maps the official model saves, so a file written here loads in the official code too.
Every tensor is a pure function of ``(seed, key)``.
"""
from __future__ import annotations

import math
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline.errors import OutputError
from pipeline.media.atomic import atomic_output, reason
from pipeline.model.arch import OFFICIAL_WIDTHS, TINY_WIDTHS, Arch, arch_from_opts, widths_to_opts
from pipeline.model.layers import BLUR_3X3, BLUR_4X4
from pipeline.model.styleganex import StyleGANEX

# Options of the released model families (spec 2.2 / 2.3); every file also gets _COMMON.
_COMMON: dict[str, Any] = {
    "output_size": 1024, "encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0,
    "res_num": 2, "use_skip": False, "skip_max_layer": 7, "use_skip_torgb": False, "use_att": 0,
    "max_pooling": False, "start_from_latent_avg": True, "learn_in_w": False, "toonify_weights": None,
    "n_styles": 18,
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"dataset_type": "toonify", "use_skip": True, "skip_max_layer": 7},
    "toonify": {"dataset_type": "toonify", "use_skip": True, "skip_max_layer": 7},
    "edit": {"dataset_type": "ffhq_edit", "use_skip": True, "skip_max_layer": 7, "use_att": 1},
    "inversion": {"dataset_type": "ffhq_encode"},
    "sr": {"dataset_type": "ffhq_super_resolution", "use_skip": True, "skip_max_layer": 2},
    "sr32": {"dataset_type": "ffhq_super_resolution", "use_skip": True, "skip_max_layer": 4},
    "sketch2face": {"dataset_type": "ffhq_sketch_to_face", "use_skip": True, "skip_max_layer": 1,
                    "input_nc": 1, "label_nc": 1},
    "mask2face": {"dataset_type": "ffhq_seg_to_face", "use_skip": True, "skip_max_layer": 2,
                  "input_nc": 19, "label_nc": 19},
}
EDITING_PRESETS = ("edit",)


def preset_opts(preset: str) -> dict[str, Any]:
    """The ``opts`` dict a checkpoint of ``preset`` carries."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    opts = {**_COMMON, **PRESETS[preset]}
    widths = TINY_WIDTHS if preset == "tiny" else OFFICIAL_WIDTHS
    if widths != OFFICIAL_WIDTHS:
        opts["facestyle_arch"] = widths_to_opts(widths)
    return opts


def constant_buffers(arch: Arch) -> dict[str, Tensor]:
    """The deterministic buffers the official generator saves (blur kernels, ``noises.*`` shapes)."""
    out: dict[str, Tensor] = {}
    blur4, blur3 = BLUR_4X4 * 4.0, BLUR_3X3.view(1, 1, 3, 3)
    for t in range(8):
        if t < 3:
            out[f"decoder.convs.{2 * t}.conv.blur_weight"] = blur3
            out[f"decoder.to_rgbs.{t}.blur_weight"] = blur3
        out[f"decoder.convs.{2 * t}.conv.blur.kernel"] = blur4
        out[f"decoder.to_rgbs.{t}.upsample.kernel"] = blur4
    for i in range(17):
        res = 4 if i == 0 else 2 ** ((i + 5) // 2)
        out[f"decoder.noises.noise_{i}"] = torch.zeros(1, 1, res, res)     # values drawn later
    return out


def _rule(key: str, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """How the uniform draw ``u`` in [-1, 1) becomes the value of ``key``."""
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1

    def sd(s: float) -> Callable[[Tensor], Tensor]:
        return lambda u: u * (s * math.sqrt(3.0))

    def around(c: float, h: float) -> Callable[[Tensor], Tensor]:
        return lambda u: u * h + c

    table: list[tuple[str, Callable[[Tensor], Tensor]]] = [
        (r"running_mean$", around(0.0, 0.05)),
        (r"running_var$", around(1.0, 0.1)),
        (r"res_layer\.4\.weight$", around(0.4, 0.05)),                   # damp residual branches
        (r"(input_layer\.1|res_layer\.0|shortcut_layer\.1|model\.11)\.weight$", around(1.0, 0.1)),
        (r"(input_layer\.1|res_layer\.[04]|shortcut_layer\.1|model\.11)\.bias$", around(0.0, 0.05)),
        (r"(input_layer\.2|res_layer\.2|model\.12)\.weight$", around(0.25, 0.05)),   # PReLU
        (r"fusion\.\d+\.norm\.style\.bias$", lambda u: torch.cat([1 + 0.05 * u[: len(u) // 2],
                                                                  0.05 * u[len(u) // 2:]])),
        (r"fusion\.\d+\.conv\.bias$", around(0.5, 0.1)),
        (r"fusion\.\d+\.fusion_(out|skip)\.weight$", sd(0.3 / math.sqrt(fan_in))),
        (r"styles\.\d+\.linear\.weight$", sd(1.0)),
        (r"^encoder\..*(transform\.0|styles\.\d+\.convs\.\d+|linear\.\d+)\.weight$",
         sd(math.sqrt(2.0 / fan_in))),
        (r"^encoder\..*\.weight$", sd(1.0 / math.sqrt(fan_in))),
        (r"^encoder\..*\.bias$", around(0.0, 0.05)),
        (r"^decoder\.style\.\d+\.weight$", sd(100.0)),                   # lr_mul 0.01: stored x100
        (r"^decoder\.style\.\d+\.bias$", around(0.0, 1.0)),
        (r"modulation\.weight$", sd(0.25)),
        (r"modulation\.bias$", around(1.0, 0.05)),
        (r"^decoder\.(to_rgb1|to_rgbs\.\d+)\.conv\.weight$", sd(0.7)),
        (r"^decoder\.(to_rgb1|to_rgbs\.\d+)\.bias$", around(0.0, 0.05)),
        (r"(noise\.weight|activate\.bias)$", around(0.0, 0.05)),
        (r"^(latent_avg|editing_w)$", sd(0.4)),
        (r".", sd(1.0)),                                                 # modconv weights, noise, const
    ]
    for pattern, fn in table:
        if re.search(pattern, key):
            return fn
    raise AssertionError("unreachable")


def _random_tensor(key: str, shape: tuple[int, ...], seed: int) -> Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(f"facestyle:{seed}:{key}".encode()))
    u = torch.rand(shape, generator=g) * 2.0 - 1.0
    return _rule(key, shape)(u).contiguous()


def _fusion_identity(key: str, t: Tensor) -> Tensor:
    """fusion_out / fusion_skip start as the identity on the generator path (as the official init)."""
    m = re.search(r"fusion_(out|skip)\.weight$", key)
    if m:
        n = t.shape[0]
        idx = torch.arange(n)
        t[idx, idx, 1, 1] += 1.0
    return t


def official_key_shapes(preset: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every state-dict key of a ``preset`` checkpoint with its shape and dtype, in file order."""
    opts = preset_opts(preset)
    with torch.device("meta"):
        model = StyleGANEX(arch_from_opts(opts), opts)
    out = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    out.update({k: (tuple(v.shape), v.dtype) for k, v in constant_buffers(model.arch).items()})
    return out


def make_random_checkpoint(preset: str, seed: int = 0) -> dict[str, Any]:
    """A checkpoint dict in the official layout with seeded random weights.

    Returns:
        ``{'state_dict', 'opts', 'latent_avg'}`` plus ``'editing_w'`` for the editing preset. The
        ``opts`` also record ``facestyle_random = {'preset', 'seed'}`` so tools can tell the file apart
        from a trained model.
    """
    opts = preset_opts(preset)
    arch = arch_from_opts(opts)
    constants = constant_buffers(arch)
    sd: OrderedDict[str, Tensor] = OrderedDict()
    for key, (shape, dtype) in official_key_shapes(preset).items():
        if dtype == torch.int64:                                  # BatchNorm num_batches_tracked
            sd[key] = torch.tensor(0, dtype=torch.int64)
        elif key in constants and ".noises." not in key:
            sd[key] = constants[key].clone()
        else:
            sd[key] = _fusion_identity(key, _random_tensor(key, shape, seed))
    style_dim = arch.widths.style_dim
    ckpt: dict[str, Any] = {
        "state_dict": sd,
        "opts": {**opts, "facestyle_random": {"preset": preset, "seed": seed}},
        "latent_avg": _random_tensor("latent_avg", (18, style_dim), seed),
    }
    if preset in EDITING_PRESETS:
        ckpt["editing_w"] = _random_tensor("editing_w", (1, 18, style_dim), seed)
    return ckpt


def save_checkpoint(ckpt: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """``torch.save`` ``ckpt`` to ``path`` atomically (see :mod:`pipeline.media.atomic`): under a hidden
    temporary name in the same folder, renamed into place when complete.

    Raises:
        OutputError: the file exists (and not ``overwrite``), its folder is missing, or it cannot
            be written; nothing is left behind.
    """
    with atomic_output(path, overwrite, option="--overwrite") as tmp:
        try:
            torch.save(ckpt, tmp)
        except (OSError, RuntimeError) as e:      # torch.save reports write failures as RuntimeError
            raise OutputError(f"{path}: cannot write ({reason(e)})") from e
    return Path(path)
