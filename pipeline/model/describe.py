"""A plain-data summary of a checkpoint, for ``facestyle checkpoint info`` and diagnostics."""
from __future__ import annotations

from typing import Any

from pipeline.model.arch import OFFICIAL_WIDTHS, arch_from_opts
from pipeline.model.checkpoint import split_checkpoint


def describe_checkpoint(ckpt: dict[str, Any], name: str = "checkpoint") -> dict[str, Any]:
    """What a checkpoint is: model family, structure, sizes, and whether its weights are random."""
    sd, opts = split_checkpoint(ckpt, name)
    arch = arch_from_opts(opts)
    n_params = sum(v.numel() for k, v in sd.items() if v.is_floating_point())
    random = opts.get("facestyle_random")
    return {
        "dataset_type": opts.get("dataset_type", "unknown"),
        "widths": "official" if arch.widths == OFFICIAL_WIDTHS else "custom (reduced)",
        "style_dim": arch.widths.style_dim,
        "input_channels": arch.input_nc,
        "fusion_blocks": arch.n_fusion,
        "editing_attention": arch.use_att,
        "has_editing_w": "editing_w" in ckpt,
        "has_discriminator": "discriminator" in ckpt,
        "state_dict_entries": len(sd),
        "parameters": n_params,
        "random_weights": bool(random),
        "random_preset": random.get("preset") if random else None,
        "random_seed": random.get("seed") if random else None,
    }
