"""Seconds per frame of ``StyleGANEX.stylize`` on this machine (prints figures; asserts nothing).

    python scripts/bench_stylize.py                      # official-size toonify, 128x128 crop, batch 1/4/8
    python scripts/bench_stylize.py --preset tiny --crop 64
    python scripts/bench_stylize.py --dtype bf16 --threads 2     # bf16 autocast over fp32 weights, as the CLI

The style codes come from a 256x256 ``x2`` computed once and reused, as in the video path; the
one-off cost of that ``x2`` pass is printed separately. Weights are seeded random (same compute as
the real models). Wall time per frame (and its ratio to the official loop's 2.23 s), and the
process's CPU time per frame, which a shared machine disturbs less (with N threads fully busy it is
N times the wall time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import build_model, make_random_checkpoint  # noqa: E402
from pipeline.runtime.cpu_allocator import keep_freed_memory  # noqa: E402
from pipeline.runtime.device import resolve_precision  # noqa: E402

# The official per-frame loop at a 128x128 crop on this project's 2-core machine (issue 16).
OFFICIAL_LOOP_S = 2.23


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toonify")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()     # as the facestyle command does
    torch.set_num_threads(args.threads)
    precision = resolve_precision(args.dtype, torch.device("cpu"))
    model = build_model(make_random_checkpoint(args.preset, 0), dtype=precision.params)
    x2 = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad(), precision.context(torch.device("cpu")):
        t = time.perf_counter()
        w = model.codes(x2)
        t_codes = time.perf_counter() - t
        print(f"preset {args.preset}, crop {args.crop}x{args.crop} -> {4 * args.crop}x{4 * args.crop}, "
              f"{args.dtype}, {args.threads} threads")
        print(f"x2 codes (once per clip): {t_codes:.3f} s")
        for b in args.batch:
            x1 = torch.rand(b, 3, args.crop, args.crop) * 2 - 1
            model.generate(model.invert(x1, w_plus=w))                  # warm-up
            times, cpu = [], []
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                model.generate(model.invert(x1, w_plus=w))
                times.append((time.perf_counter() - t) / b)
                cpu.append((time.process_time() - c) / b)
            med = statistics.median(times)
            print(f"batch {b}: {med:.3f} s/frame ({OFFICIAL_LOOP_S / med:.1f}x the official loop; median of "
                  f"{args.repeats}, min {min(times):.3f}, max {max(times):.3f}); process CPU "
                  f"{statistics.median(cpu):.3f} s/frame")


if __name__ == "__main__":
    main()
