"""Reading official StyleGANEX checkpoints strictly.

The official loader uses ``strict=False``: a mistyped or missing key silently stays random. Here
every weight must be present with the right shape; only recomputable constants may be absent or
extra (blur kernels, noise buffers, ``num_batches_tracked``), and a top-level ``discriminator`` entry
is ignored. Every failure is a :class:`~pipeline.errors.CheckpointError` with a one-line reason.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline.errors import CheckpointError
from pipeline.model.arch import N_STYLES, Arch, arch_from_opts
from pipeline.model.styleganex import StyleGANEX

log = logging.getLogger(__name__)

# keys a checkpoint may have or lack without consequence: constants we recreate, random noise maps
_IGNORABLE = re.compile(r"(^|\.)((blur|upsample)\.kernel|blur_weight|num_batches_tracked)$"
                        r"|^decoder\.noises\.")
_SAFE_GLOBALS = [argparse.Namespace]


def is_ignorable_key(key: str) -> bool:
    """True for state-dict entries that carry no learned weight (constants, noise, BN counters)."""
    return bool(_IGNORABLE.search(key))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file into a plain dict (``weights_only``: no code runs while unpickling).

    Raises:
        CheckpointError: missing, empty, truncated, not a PyTorch file, or not plain data.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except PermissionError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from e
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text or "weights_only" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"checkpoint {path} contains Python objects that are not plain data{what}; "
                                  "refusing to unpickle it") from e
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_first_line(text)})") from e
    except Exception as e:      # the unpickler raises anything (KeyError, IndexError...) on garbage
        if is_zip or "zip" in str(e).lower() or isinstance(e, EOFError):
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({_first_line(str(e))})") from e
        raise CheckpointError(f"{path} is not a PyTorch checkpoint file") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} is not a StyleGANEX checkpoint (it holds a {type(obj).__name__}, "
                              "not a dict)")
    return dict(obj)


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    line = line.split(". ")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def split_checkpoint(ckpt: Mapping[str, Any], name: str = "checkpoint"
                     ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state dict and the options of an official-layout checkpoint (with defaults inferred).

    Raises:
        CheckpointError: the dict is not a StyleGANEX checkpoint.
    """
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, Mapping) or not any(str(k).startswith("encoder.") for k in sd) \
            or not any(str(k).startswith("decoder.") for k in sd):
        top = ", ".join(sorted(map(str, ckpt))[:6])
        raise CheckpointError(f"{name} is not a StyleGANEX checkpoint (no encoder.*/decoder.* weights; "
                              f"top-level keys: {top})")
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{name}: state_dict entry {bad[0]} is not a tensor")
    opts = ckpt.get("opts") or {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        raise CheckpointError(f"{name}: 'opts' is a {type(opts).__name__}, expected a dict")
    return dict(sd), infer_missing_opts(dict(opts), sd)


def infer_missing_opts(opts: dict[str, Any], sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Fill structural options a checkpoint does not state from the keys it has."""
    fusion = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.fusion\.(\d+)\.", k))}
    if opts.get("use_skip") is None:
        opts["use_skip"] = bool(fusion)
    if opts.get("skip_max_layer") is None and fusion:
        opts["skip_max_layer"] = max(fusion) + 1
    if opts.get("use_att") is None:
        att = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.fusion\.0\.linear\.(\d+)\.", k))}
        opts["use_att"] = len(att) - 1 if att else 0
    if opts.get("use_skip_torgb") is None:
        opts["use_skip_torgb"] = any(".fusion_skip." in k for k in sd)
    if opts.get("input_nc") is None:
        w = sd.get("encoder.input_label_layer.model.0.weight")
        opts["input_nc"] = int(w.shape[1]) if w is not None else 3
    return opts


def _fmt_shape(shape: Any) -> str:
    return "x".join(map(str, shape)) or "scalar"


def check_state_dict(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor], name: str) -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected or mis-shaped keys."""
    missing = [k for k in expected if k not in sd and not is_ignorable_key(k)]
    extra = [k for k in sd if k not in expected and not is_ignorable_key(k)]
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    problems = []

    def listed(keys: list[str]) -> str:
        more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
        return ", ".join(keys[:3]) + more

    if missing:
        problems.append(f"missing {len(missing)} key(s): {listed(missing)}")
    if extra:
        problems.append(f"unexpected {len(extra)} key(s): {listed(extra)}")
    if shapes:
        k = shapes[0]
        more = f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""
        problems.append(f"wrong shape: {k} is {_fmt_shape(sd[k].shape)}, expected "
                        f"{_fmt_shape(expected[k].shape)}{more}")
    if problems:
        raise CheckpointError(f"{name} does not match the model its options describe: " + "; ".join(problems))


def _top_tensor(ckpt: Mapping[str, Any], key: str, style_dim: int, name: str) -> Tensor | None:
    t = ckpt.get(key)
    if t is None:
        return None
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise CheckpointError(f"{name}: '{key}' is not a float tensor")
    if key == "latent_avg":
        if tuple(t.shape) == (style_dim,):
            t = t.expand(N_STYLES, style_dim)
        if tuple(t.shape) != (N_STYLES, style_dim):
            raise CheckpointError(f"{name}: latent_avg is {_fmt_shape(t.shape)}, expected "
                                  f"{N_STYLES}x{style_dim} or {style_dim}")
    else:
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if tuple(t.shape[1:]) != (N_STYLES, style_dim):
            raise CheckpointError(f"{name}: editing_w is {_fmt_shape(t.shape)}, expected Nx{N_STYLES}x{style_dim}")
    return t


def build_model(ckpt: Mapping[str, Any], device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, name: str = "checkpoint") -> StyleGANEX:
    """A ready (eval, no grad) :class:`StyleGANEX` from an in-memory checkpoint dict."""
    sd, opts = split_checkpoint(ckpt, name)
    try:
        arch: Arch = arch_from_opts(opts)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{name}: unsupported options: {e}") from e
    with torch.device("meta"):
        model = StyleGANEX(arch, opts)
    expected = model.state_dict()
    check_state_dict(sd, expected, name)
    sd_w = arch.widths.style_dim
    latent_avg = _top_tensor(ckpt, "latent_avg", sd_w, name)
    if latent_avg is None:
        if opts.get("start_from_latent_avg", True):
            raise CheckpointError(f"{name} has no 'latent_avg' although its options say start_from_latent_avg")
        latent_avg = torch.zeros(N_STYLES, sd_w)
    editing_w = _top_tensor(ckpt, "editing_w", sd_w, name)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for key, target in model.state_dict().items():
            if key in sd:
                target.copy_(sd[key])
            else:                                   # an ignorable key the file lacks (BN counters)
                target.zero_()
        model.latent_avg.copy_(latent_avg)
    if editing_w is not None:
        model.editing_w = editing_w.to(device=device, dtype=torch.float32).clone()
    model = model.to(dtype=dtype)
    return model.eval().requires_grad_(False)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> StyleGANEX:
    """Read an official StyleGANEX checkpoint and build the model it describes, strictly.

    Args:
        path: a ``.pt`` file in the official layout (``state_dict``, ``opts``, ``latent_avg``,
            ``editing_w`` for editing models; an optional ``discriminator`` is ignored).
        device: where the model lives.
        dtype: parameter dtype (``torch.float32`` for parity; bf16 on CPU, fp16/bf16 on CUDA).

    Returns:
        the model in eval mode with gradients off.

    Raises:
        CheckpointError: a missing, empty, corrupt, truncated or foreign file, unsupported options,
            or a missing / unexpected / mis-shaped key (the reason names the first offending keys).
    """
    ckpt = read_checkpoint(path)
    return build_model(ckpt, device, dtype, name=f"checkpoint {path}")
