"""Test clips, written by the one clip writer (:func:`pipeline.tools.synthetic.write_clip`), and
what only tests need around them: reading a frame's index back, damaging files, audio spans.

Every frame shows an upright picture: a red band over the top quarter (so a test can tell which
way is up) and a grey body whose level encodes the frame index (``frame_index`` reads it back
through lossy coding). Rotated clips store the picture turned the other way and carry a display
matrix, the way phones record portrait video.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import cv2
import numpy as np

from pipeline.media.media_info import demux_until_broken
from pipeline.tools.synthetic import Tone, write_clip

RED = (255, 0, 0)
_STEP = 8  # grey levels between consecutive frame indices


def upright_picture(index: int, size: tuple[int, int]) -> np.ndarray:
    """The picture frame ``index`` should show when displayed upright; ``size`` is (w, h)."""
    w, h = size
    level = min(16 + _STEP * index, 240)
    pixels = np.full((h, w, 3), level, np.uint8)  # [H, W, 3]
    pixels[: max(h // 4, 2)] = RED
    return pixels


def frame_index(pixels: np.ndarray) -> int:
    """Read back the index encoded by ``upright_picture`` (the grey level of the lower half)."""
    h = pixels.shape[0]
    level = float(pixels[h // 2 :, :, 1].mean())
    return round((level - 16) / _STEP)


def top_is_red(pixels: np.ndarray) -> bool:
    """True when the top rows are the red band and the bottom rows are not."""
    top = pixels[:2].reshape(-1, 3).mean(axis=0)
    bottom = pixels[-2:].reshape(-1, 3).mean(axis=0)
    return bool(top[0] > 180 and top[1] < 90 and abs(bottom[0] - bottom[1]) < 40)


def make_clip(
    path: Path,
    *,
    frames: int = 10,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    audio: bool = False,
    audio_codec: str = "aac",
    sample_rate: int = 48000,
    audio_seconds: float | None = None,
    subtitles: bool = False,
    creation_time: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """A clip of :func:`upright_picture` frames whose display size is ``size`` (w, h), written by
    :func:`pipeline.tools.synthetic.write_clip` (see there for ``pts``, ``rotation`` and
    ``subtitles``); ``audio`` adds a mono sine track as long as the video (or ``audio_seconds``)."""
    opts = {"crf": "12"} if codec in ("libx264", "libx265") else {}
    if codec == "libx265":
        opts["x265-params"] = "log-level=error"
    tone = Tone(codec=audio_codec, sample_rate=sample_rate, seconds=audio_seconds) if audio else None
    return write_clip(path, lambda i: upright_picture(i, size), frames=frames, fps=fps, codec=codec,
                      pix_fmt=pix_fmt, options={**opts, **(options or {})}, pts=pts, time_base=time_base,
                      rotation=rotation, audio=tone, subtitles=subtitles, creation_time=creation_time)


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC-only file (no video stream)."""
    return write_clip(path, None, audio=Tone(seconds=seconds))


def face_clip(photo: Path, path: Path, frames: int = 4, audio: bool = True, width: int | None = None) -> Path:
    """A real photo drifting right by 2 px a frame at 10 frames/s, H.264, with a mono sine track;
    ``width`` scales the photo down to that width first."""
    pixels = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    if width is not None and pixels.shape[1] > width:
        pixels = cv2.resize(pixels, (width, round(pixels.shape[0] * width / pixels.shape[1])),
                            interpolation=cv2.INTER_AREA)
    h, w = (n - n % 2 for n in pixels.shape[:2])
    still = pixels[:h, :w]
    return write_clip(path, lambda i: np.roll(still, 2 * i, axis=1), frames=frames, fps=10,
                      audio=Tone(amplitude=0.2) if audio else None)


def audio_span(path: Path) -> tuple[float, float] | None:
    """(first, end) time in seconds covered by the first audio stream's packets, or None."""
    with av.open(str(path)) as src:
        if not src.streams.audio:
            return None
        stream = src.streams.audio[0]
        first, end = None, None
        for packet in src.demux(stream):
            if packet.pts is None:
                continue
            t0 = float(packet.pts * packet.time_base)
            t1 = t0 + float((packet.duration or 0) * packet.time_base)
            first = t0 if first is None else min(first, t0)
            end = t1 if end is None else max(end, t1)
    return None if first is None else (first, end)


def truncate(path: Path, keep: float) -> Path:
    """Cut the file to the first ``keep`` fraction of its bytes (a broken-off download)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return path


def garble(path: Path, at: float, length: int, seed: int = 0) -> Path:
    """Overwrite ``length`` bytes at the ``at`` fraction of the file with noise."""
    size = os.path.getsize(path)
    noise = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    with open(path, "r+b") as f:
        f.seek(int(size * at))
        f.write(noise)
    return path


def decode_problems(path: Path) -> list[str]:
    """Every problem met decoding all the video and audio of ``path`` to the end: PyAV errors,
    frames FFmpeg flags corrupt, FFmpeg's own error messages, and, when an ``ffmpeg`` binary is on
    PATH, what ``ffmpeg -v error -i path -f null -`` prints. An empty list: the file is clean."""
    problems: list[str] = []
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            decoded = dict.fromkeys((s.index for s in streams), 0)
            broken: list[av.error.FFmpegError] = []
            for packet in demux_until_broken(container, *streams, on_error=broken.append):
                try:
                    frames = packet.stream.decode(packet if packet.size else None)
                except av.error.FFmpegError as err:
                    problems.append(f"{packet.stream.type} packet at pts {packet.pts}: {err}")
                    continue
                decoded[packet.stream.index] += len(frames)
                problems += [f"{packet.stream.type} frame at pts {f.pts} flagged corrupt"
                             for f in frames if f.is_corrupt]
            problems += [f"demux: {err}" for err in broken]
            problems += [f"stream {i} decoded to no frames" for i, n in decoded.items() if n == 0]
        problems += [f"ffmpeg log: {name}: {text.strip()}" for level, name, text in logs
                     if level <= av.logging.ERROR]
    finally:
        av.logging.set_level(None)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        run = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                             capture_output=True, text=True, timeout=300)
        problems += [f"ffmpeg: {line}" for line in run.stderr.splitlines() if line.strip()]
        if run.returncode:
            problems.append(f"ffmpeg exited with {run.returncode}")
    return problems
