"""Key codes (``--code-every N``) x clips: how far the interpolated codes stray from the every-frame
codes per layer group (mean and worst per-face RMS difference, next to the every-frame codes' own
frame-to-frame change), and the whole pipeline's warping error, responsiveness and frames/s in the
default ``smoothed`` mode. Prints Markdown tables.

    python scripts/measure_code_every.py [--model tiny.pt | --preset toonify] [--seconds 2] [--every 1 2 3 4 6]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.convert import ConvertConfig, convert_file, locate_faces  # noqa: E402
from pipeline.face.detect import make_detector  # noqa: E402
from pipeline.model import load_model  # noqa: E402
from pipeline.model.checkpoint import build_model  # noqa: E402
from pipeline.model.random_checkpoint import make_random_checkpoint  # noqa: E402
from pipeline.stages import video_in  # noqa: E402
from pipeline.stages.invert import InvertConfig, codes  # noqa: E402
from pipeline.stages.keycodes import key_codes  # noqa: E402
from pipeline.stages.smooth import GROUPS, shot_cuts  # noqa: E402
from pipeline.tools.metrics import flicker  # noqa: E402


def rms_by_group(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {g: float(np.sqrt(np.mean((a[list(rows)] - b[list(rows)]) ** 2))) for g, rows in GROUPS.items()}


def code_errors(clip: Path, model, detector, seconds: float, every: list[int], batch: int) -> dict:
    """Per N: {group: (mean, worst)} RMS difference of key codes vs every-frame codes, plus "step"."""
    cfg = ConvertConfig(video_in=video_in.VideoInConfig(end=seconds),
                        invert=InvertConfig(style_code="per-frame", batch_size=batch))
    with video_in.read(clip, cfg.video_in) as reader:
        located = list(locate_faces(reader, (reader.info.width, reader.info.height), reader.info.fps, detector, cfg))
    per_frame = [{f.track_id: w[0].float().numpy() for f, w in zip(r.located.faces, r.codes, strict=True)}
                 for r in codes(iter(located), model, cfg.invert)]
    out: dict = {"frames": len(located)}
    steps = {g: [] for g in GROUPS}
    for prev, cur in zip(per_frame, per_frame[1:], strict=False):
        for t in cur.keys() & prev.keys():
            for g, v in rms_by_group(cur[t], prev[t]).items():
                steps[g].append(v)
    out["step"] = {g: (float(np.mean(v)), float(np.max(v))) for g, v in steps.items() if v}
    for n in every:
        errs = {g: [] for g in GROUPS}
        keyed = key_codes(iter(located), model, n, batch, cut=shot_cuts(cfg.smooth.shot_threshold))
        for want, rec in zip(per_frame, keyed, strict=True):
            for f, w in zip(rec.located.faces, rec.codes, strict=True):
                for g, v in rms_by_group(w[0].float().numpy(), want[f.track_id]).items():
                    errs[g].append(v)
        out[n] = {g: (float(np.mean(v)), float(np.max(v))) for g, v in errs.items() if v}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a checkpoint (default: random weights of --preset)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--media", default=str(REPO.parent / "shared" / "media"))
    ap.add_argument("--seconds", type=float, default=2.0, help="the first N seconds of each clip")
    ap.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--skip-convert", action="store_true", help="code-space errors only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model) if args.model else build_model(make_random_checkpoint(args.preset, 0))
    detector = make_detector("dlib", max_side=720)
    clips = sorted(Path(args.media).glob("*.mp4"))
    print("| clip | N | coarse mean / worst | middle mean / worst | fine mean / worst |")
    print("|---|---|---|---|---|")
    for clip in clips:
        res = code_errors(clip, model, detector, args.seconds, args.every, args.batch_size)
        cells = " | ".join(f"{m:.3f} / {w:.3f}" for m, w in res["step"].values())
        print(f"| {clip.name} ({res['frames']} frames) | frame-to-frame change | {cells} |", flush=True)
        for n in args.every:
            cells = " | ".join(f"{m:.3f} / {w:.3f}" for m, w in res[n].values())
            print(f"| {clip.name} | {n} | {cells} |", flush=True)
    if args.skip_convert:
        return
    print("\n| clip | N | warping error (input floor) | responsiveness | frames/s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for n in args.every:
                dst = Path(tmp) / f"{clip.stem}_{n}.mp4"
                cfg = ConvertConfig(video_in=video_in.VideoInConfig(end=args.seconds),
                                    invert=InvertConfig(batch_size=args.batch_size, code_every=n))
                t0 = time.monotonic()
                result = convert_file(clip, dst, model, detector, cfg)
                fps = result.frames_out / (time.monotonic() - t0)
                rep = flicker(clip, dst, max_frames=result.frames_out, detector=detector)
                resp = "n/a" if rep.responsiveness is None else f"{rep.responsiveness:.3f}"
                print(f"| {clip.name} | {n} | {rep.warp_error_output:.3f} ({rep.warp_error_input:.2f}) | {resp} | "
                      f"{fps:.2f} |", flush=True)


if __name__ == "__main__":
    main()
