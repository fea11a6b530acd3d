"""Style-code modes x clips: warping error, responsiveness and frames/s (prints a Markdown table).

    python scripts/measure_smoothing.py --model tiny.pt [--media ../shared/media] [--seconds 1.0]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.convert import ConvertConfig, convert_file  # noqa: E402
from pipeline.face.detect import make_detector  # noqa: E402
from pipeline.model import load_model  # noqa: E402
from pipeline.stages.invert import InvertConfig  # noqa: E402
from pipeline.stages.video_in import VideoInConfig  # noqa: E402
from pipeline.tools.metrics import flicker  # noqa: E402

MODES = ("first-frame", "per-frame", "smoothed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--media", default=str(REPO.parent / "shared" / "media"))
    ap.add_argument("--seconds", type=float, default=1.0, help="convert the first N seconds of each clip")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()
    model = load_model(args.model)
    detector = make_detector("dlib", max_side=720)
    clips = sorted(Path(args.media).glob("*.mp4"))
    print("| clip | mode | frames | warping error (input floor) | responsiveness | frames/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for mode in MODES:
                dst = Path(tmp) / f"{clip.stem}_{mode}.mp4"
                cfg = ConvertConfig(video_in=VideoInConfig(end=args.seconds),
                                    invert=InvertConfig(batch_size=args.batch_size, style_code=mode))
                result = convert_file(clip, dst, model, detector, cfg)
                rep = flicker(clip, dst, max_frames=result.frames_out, detector=detector)
                fps = result.frames_out / result.seconds
                resp = "n/a" if rep.responsiveness is None else f"{rep.responsiveness:.2f}"
                print(f"| {clip.name} | {mode} | {result.frames_out} | {rep.warp_error_output:.2f} "
                      f"({rep.warp_error_input:.2f}) | {resp} | {fps:.2f} |", flush=True)


if __name__ == "__main__":
    main()
