"""Make a test clip from a photo: the photo on a canvas (e.g. 1920x1080), drifting slowly, with a
sine-tone AAC track. For demos and benchmarks of ``facestyle convert``.

    python scripts/make_clip.py ../shared/media/pexels-andrea-piacquadio-733872.jpg clip1080.mp4 --frames 60
"""
from __future__ import annotations

import argparse

import av
import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo")
    ap.add_argument("output")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="1920x1080", help="canvas WxH")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--photo-height", type=int, default=900, help="height of the photo on the canvas")
    args = ap.parse_args()
    cw, ch = (int(v) for v in args.size.split("x"))
    photo = cv2.cvtColor(cv2.imread(args.photo), cv2.COLOR_BGR2RGB)
    ph = min(args.photo_height, ch)
    pw = min(cw, round(photo.shape[1] * ph / photo.shape[0]))
    photo = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    with av.open(args.output, "w") as out:
        video = out.add_stream("libx264", rate=args.fps)
        video.width, video.height, video.pix_fmt = cw, ch, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        for i in range(args.frames):
            canvas = np.full((ch, cw, 3), 40, np.uint8)
            x = (cw - pw) // 2 + round(40 * np.sin(2 * np.pi * i / max(args.frames, 1)))
            x = min(max(x, 0), cw - pw)
            y = (ch - ph) // 2
            canvas[y:y + ph, x:x + pw] = photo
            out.mux(video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(video.encode())
        n = round(48000 * args.frames / args.fps)
        t = np.arange(n) / 48000
        wave = np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
        for s in range(0, n, 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="fltp", layout="stereo")
            f.sample_rate = 48000
            out.mux(sound.encode(f))
        out.mux(sound.encode())


if __name__ == "__main__":
    main()
