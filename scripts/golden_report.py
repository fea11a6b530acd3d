"""Max and mean absolute error of every golden case (../shared/golden) for this implementation.

    python scripts/golden_report.py [--golden ../shared/golden] [--dtype fp32|bf16]
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--golden", default=str(REPO.parent / "shared" / "golden"))
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: autocast on the CPU (fidelity check of the reduced-precision mode)")
    args = ap.parse_args()
    sys.path.insert(0, args.golden)
    import recipe

    tol = recipe.load_manifest()["tolerance"]
    print(f"tolerance: max {tol['atol']:g}, mean {tol['mean_abs']:g}")
    print(f"{'case':16s} {'max abs':>10s} {'mean abs':>10s} {'PSNR uint8':>10s}")
    by_ckpt: dict = {}
    for name in recipe.case_names():
        info = recipe.case_info(name)
        by_ckpt.setdefault((info["preset"], info["seed"]), []).append(name)
    for (preset, seed), names in by_ckpt.items():
        model = build_model(recipe.make_checkpoint(preset, seed))
        for name in names:
            case = recipe.load_case(name)
            scale = recipe.case_info(name)["editing_scale"]
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
                y = model.generate(model.invert(case["x1"], case.get("x2")), 1.0 if scale is None else scale)
            y = y.float()
            err = (y - case["y"]).abs()

            def q(a: torch.Tensor) -> torch.Tensor:
                return ((a.clamp(-1, 1) + 1) * 127.5).floor()

            mse = (q(y) - q(case["y"])).square().mean().item()
            psnr = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()
            print(f"{name:16s} {err.max().item():10.2e} {err.mean().item():10.2e} {psnr:10.1f}")
        del model
        gc.collect()


if __name__ == "__main__":
    main()
