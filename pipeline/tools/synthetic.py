"""Synthetic inputs for clips and faces that are not real: the benchmark's input and the tests' one source.

* :func:`face_landmarks` / :func:`synthetic_face`: 68 dlib-order landmarks of an upright (or turned)
  face whose eye centres lie a chosen distance apart, and the :class:`~pipeline.face.detect.Face`
  around them;
* :class:`FixedFaceDetector`: a detector that reports given faces on every frame (or on chosen
  frames), so the model stages do their real work on a clip with no real face;
* :class:`MovingTexture`: smooth blobs with detail, panning slowly (the benchmark's pictures);
* :func:`write_clip`: the one writer of synthetic clips: any picture source, constant or variable
  frame rate, any codec, a display rotation, an optional :class:`Tone` audio track, a subtitle cue;
  :func:`make_synthetic_clip` is the benchmark's H.264 + stereo AAC clip made with it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.errors import UsageError
from pipeline.face.detect import Face

# -- faces -------------------------------------------------------------------------------------

# A canonical face: eye centres at (-0.5, 0) and (0.5, 0) (eye distance 1), mouth corners at (+-0.4, 1.1).
_EYE = np.array([(-0.15, 0.0), (-0.06, -0.06), (0.06, -0.06), (0.15, 0.0), (0.06, 0.06), (-0.06, 0.06)])


def _template() -> np.ndarray:
    # 0 = image-left temple .. 8 = chin .. 16 = image-right temple
    jaw = [(math.cos(a), 0.2 + 1.2 * math.sin(a)) for a in np.linspace(math.pi, 0, 17)]
    brows = [(-0.8 + 0.13 * i, -0.3) for i in range(5)] + [(0.28 + 0.13 * i, -0.3) for i in range(5)]
    nose = [(0.0, 0.1 + 0.13 * i) for i in range(4)] + [(-0.15 + 0.075 * i, 0.65) for i in range(5)]
    eyes = list(_EYE + (-0.5, 0.0)) + list(_EYE + (0.5, 0.0))
    outer = [(-0.4 + 0.8 * i / 6, 1.1 + 0.12 * math.sin(math.pi * i / 6)) for i in range(7)]
    outer += [(0.4 - 0.8 * i / 6, 1.1 + 0.12 * math.sin(math.pi * i / 6)) for i in range(1, 6)]
    inner = [(-0.3 + 0.15 * i, 1.1) for i in range(5)] + [(0.15 - 0.15 * i, 1.13) for i in range(3)]
    return np.array(jaw + brows + nose + eyes + outer + inner, dtype=np.float64)   # [68, 2]


TEMPLATE = _template()


def face_landmarks(centre: tuple[float, float], eye_distance: float, angle_deg: float = 0.0,
                   mouth: float = 1.1) -> np.ndarray:
    """``[68, 2]`` float64 dlib-order points: the eye midpoint at ``centre``, the eye centres
    ``eye_distance`` apart, turned by ``angle_deg`` (counter-clockwise on screen), the mouth corners
    ``mouth * eye_distance`` below the eyes."""
    t = TEMPLATE.copy()
    t[48:68, 1] += mouth - 1.1
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return (t * eye_distance) @ rot.T + np.asarray(centre, dtype=np.float64)


def synthetic_face(cx: float, cy: float, eye_distance: float) -> Face:
    """An upright :class:`Face` (score 1) with the eye centres ``eye_distance`` apart around (cx, cy)."""
    d = eye_distance
    lm = face_landmarks((cx, cy), d).astype(np.float32)
    return Face(box=(cx - d, cy - d, cx + d, cy + 2 * d), landmarks=lm, score=1.0)


class FixedFaceDetector:
    """A :class:`~pipeline.face.detect.Detector` that reports the same ``faces`` on every frame, or
    only on the calls whose index is in ``on``; ``calls`` counts the frames it was shown."""

    def __init__(self, *faces: Face, on: Collection[int] | None = None) -> None:
        self.faces, self.on, self.calls = list(faces), on, 0

    @property
    def face(self) -> Face:
        """The first face."""
        return self.faces[0]

    def detect(self, pixels: np.ndarray) -> list[Face]:
        i = self.calls
        self.calls += 1
        return list(self.faces) if self.on is None or i in self.on else []


# -- pictures ----------------------------------------------------------------------------------

class MovingTexture:
    """Smooth blobs with mid-scale detail, panning slowly: frame ``i`` is a view into one large picture."""

    def __init__(self, size: tuple[int, int], seed: int = 0, margin: int = 64) -> None:
        w, h = size
        self.size, self.margin = size, margin
        rng = np.random.default_rng(seed)
        big = (w + margin, h + margin)
        coarse = rng.integers(0, 256, (big[1] // 48 + 2, big[0] // 48 + 2, 3)).astype(np.uint8)
        detail = rng.integers(-24, 25, (big[1] // 4 + 1, big[0] // 4 + 1, 1)).astype(np.float32)
        base = cv2.resize(coarse, big, interpolation=cv2.INTER_CUBIC).astype(np.float32)
        base += cv2.resize(detail, big, interpolation=cv2.INTER_LINEAR)[:, :, None]
        self.base = np.clip(base, 0, 255).astype(np.uint8)  # [h + margin, w + margin, 3]

    def frame(self, i: int) -> np.ndarray:
        """``[h, w, 3]`` uint8 RGB (a view)."""
        w, h = self.size
        dx, dy = _triangle(3 * i, self.margin), _triangle(i, self.margin)
        return self.base[dy:dy + h, dx:dx + w]


def _triangle(t: int, period: int) -> int:
    t %= 2 * period
    return t if t < period else 2 * period - t - 1


# -- clips -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tone:
    """A sine audio track: one frequency per channel (one: mono, two: stereo).

    ``seconds``: its length; None makes it as long as the clip's video.
    """

    hz: tuple[float, ...] = (440.0,)
    amplitude: float = 0.3
    sample_rate: int = 48000
    codec: str = "aac"
    seconds: float | None = None

    @property
    def layout(self) -> str:
        return "mono" if len(self.hz) == 1 else "stereo"


Pictures = Callable[[int], np.ndarray]       # frame index -> [h, w, 3] uint8 RGB, shown upright


def write_clip(path: Path, pictures: Pictures | None, *, frames: int = 10, fps: int = 10,
               codec: str = "libx264", pix_fmt: str = "yuv420p", options: Mapping[str, str] | None = None,
               pts: list[int] | None = None, time_base: Fraction | None = None, rotation: int = 0,
               audio: Tone | None = None, subtitles: bool = False, creation_time: str | None = None) -> Path:
    """Write a clip of ``pictures(0) .. pictures(frames - 1)`` and return ``path``.

    Args:
        pictures: the upright picture of each frame (all of one size); None writes an audio-only
            file (``audio.seconds`` long).
        pts: timestamps in ``time_base`` (default ``1 / fps``) for a variable frame rate (then
            ``frames`` is ``len(pts)``); default ``0 .. frames - 1``.
        rotation: counter-clockwise degrees, as FFmpeg reports them: the picture is stored turned
            clockwise by that angle with a display matrix that turns it back (as phones record).
        audio: a sine track, as long as the video unless ``audio.seconds`` says otherwise.
        subtitles: one subrip cue (Matroska only).
        creation_time: the container's ``creation_time`` tag.

    Raises:
        UsageError: no pictures and no audio, or no frames.
    """
    path = Path(path)
    stamps = pts if pts is not None else list(range(frames))
    tb = time_base or Fraction(1, fps)
    if pictures is None and audio is None:
        raise UsageError("a clip needs pictures or audio")
    if pictures is not None and not stamps:
        raise UsageError("a clip needs at least one frame")
    with av.open(str(path), "w") as out:
        if creation_time:
            out.metadata["creation_time"] = creation_time
        video = None
        if pictures is not None:
            h, w = pictures(0).shape[:2]
            video = out.add_stream(codec, rate=fps)
            video.width, video.height = (h, w) if rotation % 180 else (w, h)
            video.pix_fmt = pix_fmt
            video.codec_context.time_base = tb
            video.time_base = tb
            video.options = dict(options or {})
            if rotation:
                video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = out.add_stream(audio.codec, rate=audio.sample_rate)
            sound.layout = audio.layout
        sub = out.add_mux_stream("subrip") if subtitles else None
        if sub is not None:
            sub.time_base = Fraction(1, 1000)

        if video is not None and pictures is not None:
            for i, stamp in enumerate(stamps):
                picture = np.rot90(pictures(i), k=-(rotation // 90))
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts, frame.time_base = stamp, tb
                out.mux(video.encode(frame))
            out.mux(video.encode())
        if sound is not None and audio is not None:
            seconds = audio.seconds if audio.seconds is not None else float((stamps[-1] + 1) * tb)
            _write_tone(out, sound, audio, seconds)
        if sub is not None:
            cue = av.Packet(b"hello")
            cue.stream = sub
            cue.pts = cue.dts = 100
            cue.duration = 300
            cue.time_base = Fraction(1, 1000)
            out.mux(cue)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, tone: Tone,
                seconds: float) -> None:
    rate = tone.sample_rate
    n = round(seconds * rate)
    t = np.arange(n) / rate
    wave = (tone.amplitude * np.stack([np.sin(2 * np.pi * hz * t) for hz in tone.hz])).astype(np.float32)  # [C, N]
    for s in range(0, n, 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="fltp",
                                           layout=tone.layout)
        chunk.sample_rate, chunk.pts, chunk.time_base = rate, s, Fraction(1, rate)
        out.mux(stream.encode(chunk))
    out.mux(stream.encode())


def make_synthetic_clip(path: Path, frames: int, size: tuple[int, int], fps: int = 30) -> Path:
    """The benchmark's input: an H.264 clip of ``frames`` frames of :class:`MovingTexture` at
    ``size`` (w, h, even), with a stereo AAC tone as long as the video.

    Raises:
        UsageError: an odd size or one under 16x16.
    """
    w, h = size
    if w % 2 or h % 2 or w < 16 or h < 16:
        raise UsageError(f"synthetic clip size must be even and at least 16x16, got {w}x{h}")
    return write_clip(path, MovingTexture(size).frame, frames=frames, fps=fps,
                      options={"crf": "20", "preset": "veryfast"}, audio=Tone(hz=(440.0, 660.0), amplitude=0.2))
