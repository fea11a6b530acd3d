"""Run inside the VapourSynth host (``.hosts/vapoursynth``): compare the filter with ``convert``.

``python vs_driver.py CLIP MODEL WORKDIR OPTIONS_JSON`` prints one JSON report; the pytest side
(test_vapoursynth.py) asserts on it. The clip reaches VapourSynth as the very RGB frames our
decoder gives ``convert`` (with their timestamps), so the two see identical input.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import vapoursynth as vs

from pipeline.convert import convert_file
from pipeline.face.detect import make_detector
from pipeline.model import load_model
from pipeline.options import convert_config, parse_options
from pipeline.plugins.vapoursynth import stylize
from pipeline.runtime.device import resolve_device, resolve_precision
from pipeline.stages.video_in import VideoInConfig, read

SOURCE = '''
import sys
import numpy as np
import vapoursynth as vs
sys.path.insert(0, {repo!r})
from pipeline.plugins.vapoursynth import stylize
frames = np.load({npz!r})
pixels, times = frames["pixels"], frames["times"]
blank = vs.core.std.BlankClip(width=pixels.shape[2], height=pixels.shape[1], format=vs.RGB24,
                              length=len(pixels), fpsnum={fpsnum}, fpsden={fpsden})
def fill(n, f):
    out = f.copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), pixels[n, :, :, p])
    out.props["_AbsoluteTime"] = float(times[n])
    return out
clip = vs.core.std.ModifyFrame(blank, blank, fill)
'''


def decoded(path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    with read(path, VideoInConfig()) as reader:
        frames = list(reader)
        fps = reader.info.fps
    return np.stack([f.pixels for f in frames]), np.array([f.time for f in frames]), fps


def rgb_of(frame: vs.VideoFrame) -> np.ndarray:
    return np.stack([np.asarray(frame[p]) for p in range(3)], axis=-1)


def main() -> None:
    clip_path, model_path, work, options = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
    repo = str(Path(__file__).resolve().parents[2])
    pixels, times, fps = decoded(clip_path)
    npz = work / "frames.npz"
    np.savez(npz, pixels=pixels, times=times)
    source = SOURCE.format(repo=repo, npz=str(npz), fpsnum=fps.numerator, fpsden=fps.denominator)
    scope: dict = {}
    exec(source, scope)                                          # the same source the vspipe script uses
    clip = scope["clip"]

    # facestyle convert, lossless RGB out, one face per batch as the filter renders (the automatic
    # CPU batches of up to 8 take other oneDNN kernels: within one code value, not bit-exact)
    args = parse_options({"model": model_path, **options, "codec": "ffv1", "pix_fmt": "bgr0", "batch_size": 1},
                         job=False)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model = load_model(model_path, device=device, dtype=precision.params)
    out = work / "convert.mkv"
    convert_file(clip_path, out, model, make_detector(args.detector, max_side=args.detect_max_side),
                 convert_config(args, device, precision))
    with av.open(str(out)) as c:
        converted = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])

    styled = stylize(clip, model=model_path, **options)
    linear = np.stack([rgb_of(f) for f in styled.frames()])
    order = list(range(len(pixels)))
    random.Random(7).shuffle(order)
    fresh = stylize(clip, model=model_path, **options)          # a new filter: its plan starts empty
    shuffled = {n: rgb_of(fresh.get_frame(n)) for n in order}
    random_access = np.stack([shuffled[n] for n in range(len(pixels))])

    script = work / "stylize.vpy"
    script.write_text(source + f"stylize(clip, model={model_path!r}, **{options!r}).set_output()\n")
    raw = work / "out.rgb"
    vspipe = Path(sys.executable).with_name("vspipe")
    proc = subprocess.run([str(vspipe), str(script), str(raw)], capture_output=True, text=True, timeout=600)
    piped = None
    if proc.returncode == 0:
        n, h, w = len(pixels), pixels.shape[1], pixels.shape[2]
        planes = np.fromfile(raw, np.uint8).reshape(n, 3, h, w)        # vspipe writes RGB as G, B, R planes
        piped = planes[:, [2, 0, 1]].transpose(0, 2, 3, 1)

    yuv = vs.core.resize.Bicubic(clip, format=vs.YUV420P8, matrix_s="709")
    yuv_out = stylize(yuv, model=model_path, **options)
    changed = max(float(np.abs(np.asarray(a[0], dtype=int) - np.asarray(b[0], dtype=int)).mean())
                  for a, b in zip(yuv.frames(), yuv_out.frames(), strict=True))

    def diff(a: np.ndarray | None) -> int | None:
        return None if a is None or a.shape != linear.shape else int(np.abs(a.astype(int) - linear).max())

    print(json.dumps({
        "frames": len(pixels), "fps": [fps.numerator, fps.denominator],
        "clip": {"frames": styled.num_frames, "fps": [styled.fps.numerator, styled.fps.denominator],
                 "size": [styled.width, styled.height], "format": styled.format.name},
        "converted_frames": len(converted), "convert_vs_linear": diff(converted),
        "random_vs_linear": diff(random_access), "vspipe_vs_linear": diff(piped),
        "vspipe_error": None if proc.returncode == 0 else proc.stderr[-2000:],
        "changed_vs_input": int(np.abs(linear.astype(int) - pixels).max()),
        "yuv": {"format": yuv_out.format.name, "frames": yuv_out.num_frames, "mean_luma_change": changed},
    }))


if __name__ == "__main__":
    main()
