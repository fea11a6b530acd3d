"""Seconds per frame of the official StyleGANEX video loop on this machine (prints figures; asserts nothing).

    python scripts/official_loop.py --official /path/to/StyleGANEX --crop 128 --threads 2
    OMP_WAIT_POLICY=PASSIVE python scripts/official_loop.py --official /tmp/StyleGANEX --threads 1 --frames 4

The official code is imported at run time from ``--official`` (a checkout of
williamyang1991/StyleGANEX; nothing of it is copied here). Its ``models/stylegan2/op`` ops are plain
PyTorch, so nothing is compiled or replaced; only if matplotlib is missing, the one call
``models/psp.py`` makes to it (a plotting backend choice) is stood in by a no-op. The model is built
by the official ``pSp`` from a seeded random checkpoint in the official layout
(``pipeline.make_random_checkpoint``, official sizes), and every frame makes the call its
``video_editing.py`` makes per frame: batch 1, float32, ``eval()``, under ``no_grad``,
``pSp(x1=x1, x2=x2, use_skip=opts.use_skip, zero_noise=True, resize=False, editing_w=...)`` (so the
encoder runs on ``x1`` and on the fixed 256x256 ``x2`` every frame), then the clamp. Frame reading,
landmarks and video writing are left out. A new random ``x1`` per frame; prints the median wall time
and process CPU time per frame.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from argparse import Namespace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import make_random_checkpoint  # noqa: E402


def build_official(official: Path, preset: str) -> tuple[torch.nn.Module, torch.Tensor | None]:
    """The official ``pSp`` with a random official-size checkpoint, as its video script builds it."""
    if not (official / "models" / "psp.py").is_file():
        raise SystemExit(f"error: {official} is not a StyleGANEX checkout (no models/psp.py)")
    sys.path.insert(0, str(official))
    try:
        import matplotlib  # noqa: F401
    except ImportError:     # models/psp.py only selects a plotting backend with it: stand in a no-op
        sys.modules["matplotlib"] = types.SimpleNamespace(use=lambda backend: None)  # type: ignore[assignment]
    cwd = Path.cwd()
    os.chdir(official)          # the official modules resolve some paths from the repository root
    try:
        from models.psp import pSp  # type: ignore[import-not-found]
    finally:
        os.chdir(cwd)
    ckpt = make_random_checkpoint(preset, 0)
    opts = dict(ckpt["opts"], checkpoint_path=f"<random {preset}>", device="cpu")
    model = pSp(Namespace(**opts), ckpt=ckpt).eval()
    loaded = set(model.state_dict())
    missing = [k for k in ckpt["state_dict"] if k not in loaded]
    if missing:     # the official loader is strict=False: check the layout matched ourselves
        raise SystemExit(f"error: {len(missing)} checkpoint keys unknown to the official model, e.g. {missing[0]}")
    editing_w = ckpt["editing_w"][0:1].clone() if "editing_w" in ckpt else None
    return model, editing_w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="path of a StyleGANEX checkout")
    ap.add_argument("--preset", default="toonify")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    if args.crop % 8:
        raise SystemExit("error: --crop must be a multiple of 8")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, editing_w = build_official(args.official.resolve(), args.preset)
    x2 = torch.rand(1, 3, 256, 256) * 2 - 1
    times, cpu = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.frames):
            x1 = torch.rand(1, 3, args.crop, args.crop) * 2 - 1
            t, c = time.perf_counter(), time.process_time()
            y = model(x1=x1, x2=x2, use_skip=model.opts.use_skip, zero_noise=True, resize=False,
                      editing_w=editing_w)
            y = torch.clamp(y, -1, 1)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
    print(f"official loop, preset {args.preset}, crop {args.crop}x{args.crop} -> {tuple(y.shape[2:])}, "
          f"fp32, batch 1, {args.threads} threads")
    print(f"{statistics.median(times):.3f} s/frame (median of {args.frames} after {args.warmup} warm-up; "
          f"min {min(times):.3f}, max {max(times):.3f}); process CPU {statistics.median(cpu):.3f} s/frame")


if __name__ == "__main__":
    main()
