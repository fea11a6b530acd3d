"""Architecture presets: every size and switch of a StyleGANEX model in one frozen dataclass.

The official models are one point in this space (``official``); ``tiny`` is the same code at a
fraction of the width, for tests and benchmarks. Widths are data: a checkpoint written by
``facestyle checkpoint random --preset tiny`` stores them in ``opts["facestyle_arch"]``, and
:func:`arch_from_opts` reads them back. Official checkpoints have no such entry and get the
official widths.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

N_STYLES = 18          # W+ rows of a 1024 generator: 2 * log2(1024) - 2
UNITS_PER_STAGE = (3, 4, 14, 3)   # IR-SE50: units 0-2, 3-6, 7-20, 21-23
# index of the IR-SE unit whose output each named encoder feature is (spec 4.1)
C128, C1, C21, C22, C2, C3 = 2, 6, 10, 15, 20, 23
FEATURE_UNITS_NEEDED = C2 + 1     # units 0..20 are all the x1 pass needs when x2 gives the codes

# Defaults of the official training options that matter at inference (spec 2.2).
OPTS_DEFAULTS: dict[str, Any] = {
    "output_size": 1024,
    "encoder_type": "GradualStyleEncoder",
    "input_nc": 3,
    "res_num": 2,
    "use_skip": False,
    "skip_max_layer": 7,
    "use_skip_torgb": False,
    "use_att": 0,
    "max_pooling": False,
    "start_from_latent_avg": True,
    "learn_in_w": False,
}


@dataclass(frozen=True)
class Widths:
    """Channel widths; everything else about the network is fixed by the official design.

    Attributes:
        style_dim: length of one W+ row (512 officially).
        encoder: output channels of the four IR-SE stages (64, 128, 256, 512).
        head: channels of the FPN maps and the style heads (512).
        generator: channels of the generator at nominal resolution 4, 8, ..., 1024.
        translation: channels inside the translation net T (16).
    """

    style_dim: int = 512
    encoder: tuple[int, int, int, int] = (64, 128, 256, 512)
    head: int = 512
    generator: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64, 32)
    translation: int = 16

    def __post_init__(self) -> None:
        if len(self.encoder) != 4 or len(self.generator) != 9:
            raise ValueError("Widths needs 4 encoder stages and 9 generator resolutions")
        if min(self.encoder) < 16:
            raise ValueError("encoder widths must be >= 16 (squeeze-excitation divides by 16)")


OFFICIAL_WIDTHS = Widths()
TINY_WIDTHS = Widths(style_dim=32, encoder=(16, 16, 32, 32), head=32,
                     generator=(32, 32, 32, 32, 32, 16, 8, 8, 8), translation=8)


@dataclass(frozen=True)
class Arch:
    """The structure of one StyleGANEX model.

    Attributes:
        widths: channel widths.
        input_nc: input channels; != 3 adds the translation net T (sketch: 1, mask: 19).
        res_num: residual blocks in T.
        n_fusion: fusion blocks between encoder and generator (0 = no skip connections).
        use_att: depth of the editing-attention MLP in each fusion block (0 = none).
        use_skip_torgb: fusion blocks also rewrite the RGB skip.
        max_pooling: style heads pool with max instead of mean.
        n_mlp: layers of the generator's mapping network.
    """

    widths: Widths = field(default_factory=Widths)
    input_nc: int = 3
    res_num: int = 2
    n_fusion: int = 0
    use_att: int = 0
    use_skip_torgb: bool = False
    max_pooling: bool = False
    n_mlp: int = 8

    @property
    def use_skip(self) -> bool:
        return self.n_fusion > 0

    def fusion_channels(self) -> list[tuple[int, int]]:
        """(encoder feature channels, generator channels) of fusion block k = 0..6."""
        e, g = self.widths.encoder, self.widths.generator
        enc = [e[2], e[2], e[2], e[2], e[1], e[0], e[0]]
        return [(enc[k], g[k]) for k in range(7)]


def _opt(opts: Mapping[str, Any], name: str) -> Any:
    value = opts.get(name)
    return OPTS_DEFAULTS[name] if value is None else value


def arch_from_opts(opts: Mapping[str, Any]) -> Arch:
    """The architecture an official (or facestyle-written) checkpoint's ``opts`` describes.

    Raises:
        ValueError: the options describe something this implementation does not build.
    """
    if _opt(opts, "encoder_type") != "GradualStyleEncoder":
        raise ValueError(f"encoder_type {opts.get('encoder_type')!r} is not GradualStyleEncoder")
    size = int(_opt(opts, "output_size"))
    if size != 1024:
        raise ValueError(f"output_size {size} is not supported (StyleGANEX models are 1024)")
    if _opt(opts, "learn_in_w"):
        raise ValueError("learn_in_w models are not supported")
    widths = OFFICIAL_WIDTHS
    custom = opts.get("facestyle_arch")
    if custom:
        widths = Widths(style_dim=int(custom["style_dim"]), encoder=tuple(custom["encoder"]),
                        head=int(custom["head"]), generator=tuple(custom["generator"]),
                        translation=int(custom.get("translation", 16)))
    use_skip = bool(_opt(opts, "use_skip"))
    n_fusion = max(1, min(7, int(_opt(opts, "skip_max_layer")))) if use_skip else 0
    return Arch(widths=widths, input_nc=int(_opt(opts, "input_nc")), res_num=int(_opt(opts, "res_num")),
                n_fusion=n_fusion, use_att=int(_opt(opts, "use_att")),
                use_skip_torgb=bool(_opt(opts, "use_skip_torgb")),
                max_pooling=bool(_opt(opts, "max_pooling")))


def widths_to_opts(widths: Widths) -> dict[str, Any]:
    """The ``opts["facestyle_arch"]`` entry that stores non-official widths (plain Python values)."""
    d = asdict(widths)
    d["encoder"] = list(d["encoder"])
    d["generator"] = list(d["generator"])
    return d


# Generator layer plan (spec 5.2): nominal resolution 2**i for i = 3..10 has an up-conv, a conv and
# a ToRGB. The first three "upsamplings" are simulated with dilation so the map stays at H/8.
def up_dilation(i: int) -> int:
    """Dilation of the up-conv and ToRGB at nominal resolution 2**i."""
    return max(1, 32 // 2 ** (i - 1))


def conv_dilation(i: int) -> int:
    """Dilation of the second conv at nominal resolution 2**i."""
    return max(1, 32 // 2 ** i)


CONV1_DILATION = 8
LOG_SIZE = int(math.log2(1024))


def tiny(**changes: Any) -> Arch:
    """The reduced-width toonify-shaped architecture used by tests and benchmarks."""
    return replace(Arch(widths=TINY_WIDTHS, n_fusion=7), **changes)
