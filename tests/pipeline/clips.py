"""Tiny synthetic clips for the video_in / video_out tests, made with PyAV (no asset files).

Every frame shows an upright picture: a red band over the top quarter (so a test can tell which
way is up) and a grey body whose level encodes the frame index (``frame_index`` reads it back
through lossy coding). Rotated clips store the picture turned the other way and carry a display
matrix, the way phones record portrait video.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

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
    """Write a clip whose display size is ``size`` (w, h) and return its path.

    ``pts`` (in ``time_base``, default 1/fps) gives irregular timestamps for VFR clips.
    ``rotation`` (counter-clockwise degrees, as FFmpeg reports it) stores the picture turned
    clockwise by that angle plus a display matrix that turns it back. ``audio`` adds a sine
    track as long as the video (or ``audio_seconds``); ``subtitles`` adds one subrip cue
    (Matroska only).
    """
    path = Path(path)
    w, h = size
    stored_w, stored_h = (h, w) if rotation % 180 else (w, h)
    tb = time_base or Fraction(1, fps)
    stamps = pts if pts is not None else list(range(frames))
    with av.open(str(path), "w") as out:
        if creation_time:
            out.metadata["creation_time"] = creation_time
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = stored_w, stored_h, pix_fmt
        video.codec_context.time_base = tb
        video.time_base = tb
        opts = {"crf": "12"} if codec in ("libx264", "libx265") else {}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        video.options = {**opts, **(options or {})}
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio_codec, rate=sample_rate)
            sound.layout = "mono"
        sub = out.add_mux_stream("subrip") if subtitles else None
        if sub is not None:
            sub.time_base = Fraction(1, 1000)

        for i, stamp in enumerate(stamps):
            picture = np.rot90(upright_picture(i, size), k=-(rotation // 90))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame.pts = stamp
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode())

        if sound is not None:
            seconds = audio_seconds if audio_seconds is not None else float((stamps[-1] + 1) * tb)
            _write_sine(out, sound, sample_rate, seconds)
        if sub is not None:
            cue = av.Packet(b"hello")
            cue.stream = sub
            cue.pts = cue.dts = 100
            cue.duration = 300
            cue.time_base = Fraction(1, 1000)
            out.mux(cue)
    return path


def _write_sine(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                rate: int, seconds: float) -> None:
    total = round(seconds * rate)
    t = np.arange(total, dtype=np.float32) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # [1, N]
    for start in range(0, total, 1024):
        chunk = np.ascontiguousarray(wave[:, start : start + 1024])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC-only file (no video stream)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        _write_sine(out, sound, 48000, seconds)
    return path


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
