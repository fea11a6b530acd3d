"""The main job: a clip (or photo, or a folder of them) in, a finished stylized file out.

    frames    = video_in.read(src, cfg.video_in)
    located   = detect_crop.locate(frames, detector, cfg.face, ...)
    coded     = invert.codes(located, model, cfg.invert)        # W+ codes from the aligned face
    smoothed  = smooth.smooth(coded, cfg.smooth)                # style code mode "smoothed"
    inverted  = invert.features(smoothed, model, cfg.invert)    # x1 features
    generated = generate.generate(inverted, model, cfg.generate)
    out       = paste.paste(generated, cfg.paste)
    video_out.write(out, dst, cfg.video_out, info, audio_from=src)

Each stage is a streaming iterator, so memory does not grow with the clip. Decoding and encoding run
in their own threads (inside video_in / video_out). The output is written under a temporary name
and renamed on success; on any failure or Ctrl-C nothing is left behind.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from pipeline.errors import FacestyleError, InputError, NoFaceError, OutputError, UsageError
from pipeline.face.detect import Detector
from pipeline.media.media_info import FALLBACK_FPS, is_image_path
from pipeline.model import StyleGANEX
from pipeline.progress import NullProgress, Progress
from pipeline.records import Coded, Frame, Located, OutFrame
from pipeline.runtime.device import Precision
from pipeline.runtime.queues import run_ahead
from pipeline.stages import detect_crop, generate, invert, paste, smooth, video_in, video_out

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".ts", ".mxf", ".y4m"}
# Face finding (detect, track, crop) runs in its own thread this many frames ahead of the model, so
# the detector is off the model's critical path (dlib and OpenCV run while PyTorch holds no GIL).
FIND_FACES_AHEAD = 4
PASTE_ON = ("auto", "device", "host")
CROP_ON = PASTE_ON
NO_FACE = ("error", "pass")


@dataclass(frozen=True)
class ConvertConfig:
    """Everything ``convert`` needs besides the model and the detector.

    Attributes:
        no_face: ``"error"`` (a clip with no face at all fails) or ``"pass"`` (it is copied through
            with a warning).
        paste_on: ``"auto"`` (see :meth:`paste_device`), ``"device"`` or ``"host"``.
        crop_on: ``"auto"`` (see :meth:`crop_device`), ``"device"`` or ``"host"``.
        drop_lost: drop frames with no face instead of passing them through.
        precision: the autocast setting for inference (the weight dtype is the loaded model's).
    """

    video_in: video_in.VideoInConfig = field(default_factory=video_in.VideoInConfig)
    face: detect_crop.FaceConfig = field(default_factory=detect_crop.FaceConfig)
    invert: invert.InvertConfig = field(default_factory=invert.InvertConfig)
    smooth: smooth.SmoothConfig = field(default_factory=smooth.SmoothConfig)
    generate: generate.GenerateConfig = field(default_factory=generate.GenerateConfig)
    paste: paste.PasteConfig = field(default_factory=paste.PasteConfig)
    video_out: video_out.VideoOutConfig = field(default_factory=video_out.VideoOutConfig)
    no_face: str = "error"
    drop_lost: bool = False
    precision: Precision = field(default_factory=Precision)
    paste_on: str = "auto"
    crop_on: str = "auto"

    def __post_init__(self) -> None:
        if self.no_face not in NO_FACE:
            raise ValueError(f"no_face must be one of {NO_FACE}")
        if self.paste.mode == "crop" and self.face.faces == "all":
            raise UsageError("crop output needs a single face: output mode 'crop' goes with face 'largest'")
        if self.paste_on not in PASTE_ON:
            raise ValueError(f"paste_on must be one of {PASTE_ON}")
        if self.crop_on not in CROP_ON:
            raise ValueError(f"crop_on must be one of {CROP_ON}")

    def nvenc_zero_copy(self, model_device: torch.device, is_image: bool = False) -> bool:
        """Whether the pasted frames stay on the GPU for the encoder (NV12 read by NVENC, no copy to
        the host): the paste runs on CUDA (:meth:`paste_device`), the encoder is an NVENC one in
        PyAV (:func:`pipeline.media.encoders.takes_device_frames`) and the output 8-bit 4:2:0.
        Otherwise the planes come down with one copy per frame."""
        from pipeline.media.encoders import takes_device_frames

        device = self.paste_device(model_device, is_image)
        return (device is not None and device.type == "cuda" and takes_device_frames(self.video_out)
                and self.video_out.pixel_format in ("yuv420p", "nv12"))

    def crop_device(self, model_device: torch.device) -> torch.device | None:
        """Where the model's inputs (the ``x1`` crops and the aligned faces) are cut: the one place
        that decides it.

        On the model's device when that is CUDA (``crop_on="auto"``) or always (``"device"``, for
        tests on a CPU): face finding hands on the geometry only and the invert stage uploads the
        frame once and cuts there (:mod:`pipeline.face.warp`), a frame the paste then reuses. Else
        None: cut on the host by OpenCV and Pillow in the face finding thread, which measured faster on
        a CPU (1080p: crop 3.7 vs 6.5 ms, aligned face 1.7 vs 3.2 ms).
        """
        if self.crop_on == "host":
            return None
        if self.crop_on == "device" or model_device.type == "cuda":
            return model_device
        return None

    def paste_device(self, model_device: torch.device, is_image: bool = False) -> torch.device | None:
        """Where paste runs: the one place that decides it.

        On the model's device (crops stay there, the frame goes up, YUV 4:2:0 planes come back) when
        that is CUDA, the output is full frames in 4:2:0 and not a photo (``paste_on="auto"``), or
        always in full mode (``"device"``, for tests on a CPU); else None: on the host in NumPy, RGB out.
        """
        if self.paste.mode != "full" or is_image or self.paste_on == "host":
            return None
        if self.paste_on == "device":
            return model_device
        on_cuda = model_device.type == "cuda" and self.video_out.pixel_format == "yuv420p"
        return model_device if on_cuda else None


@dataclass
class ConvertResult:
    src: Path
    dst: Path | None
    frames_in: int = 0
    frames_out: int = 0
    frames_with_face: int = 0
    seconds: float = 0.0
    damage: str | None = None
    error: str | None = None
    repairs: list[str] = field(default_factory=list)  # damaged audio re-encoded, subtitle packets dropped

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        return {"src": str(self.src), "dst": None if self.dst is None else str(self.dst), "ok": self.ok,
                "frames_in": self.frames_in, "frames_out": self.frames_out,
                "frames_with_face": self.frames_with_face, "seconds": round(self.seconds, 3),
                "fps": round(self.frames_out / self.seconds, 3) if self.seconds else None,
                "damage": self.damage, "repairs": self.repairs, "error": self.error}


def default_output(src: Path, tag: str, folder: Path | None = None) -> Path:
    """``<stem>_<tag><suffix>`` beside the input (or in ``folder``); videos become .mp4."""
    suffix = src.suffix.lower() if is_image_path(src) else ".mp4"
    return (folder or src.parent) / f"{src.stem}_{tag}{suffix}"


class _Counter:
    """Counts frames in and frames with a face as they stream past."""

    def __init__(self) -> None:
        self.frames = 0
        self.with_face = 0
        self.frames_out = 0

    def count_in(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for f in frames:
            self.frames += 1
            yield f

    def count_faces(self, items: Iterable[Located]) -> Iterator[Located]:
        for item in items:
            self.with_face += bool(item.faces)
            yield item

    def tap(self, name: str, items: Iterator) -> Iterator:
        return self.count_faces(items) if name == "detect" else items


Tap = Callable[[str, Iterator], Iterator]


def _no_tap(name: str, items: Iterator) -> Iterator:
    return items


def stages(frames: Iterable[Frame], info: video_in.VideoInfo, model: StyleGANEX, detector: Detector,
           cfg: ConvertConfig, tap: Tap = _no_tap) -> Iterator[OutFrame]:
    """The chain between decoding and encoding: detect/crop -> codes -> smooth -> invert -> generate -> paste.

    ``tap(name, items)`` may wrap each stage's output ("detect", "codes", "smooth", "invert",
    "generate", "paste"); the runner counts with it, the benchmark times with it. Face finding runs
    in its own thread (``FIND_FACES_AHEAD``); the taps are all called on the caller's thread. The one place that
    composes the stages (:mod:`pipeline.plugins.vapoursynth` splits the same chain into a planning and a
    rendering half, see :func:`plan` and :func:`render`).
    """
    located = locate_faces(frames, (info.width, info.height), info.fps, detector, cfg, ahead=FIND_FACES_AHEAD,
                           device=cfg.crop_device(model.latent_avg.device))
    return render(plan(tap("detect", located), info.fps, model, cfg, tap), model, cfg, tap, is_image=info.is_image)


def locate_faces(frames: Iterable[Frame], size: tuple[int, int], fps: float | None, detector: Detector,
                 cfg: ConvertConfig, ahead: int = 0, *, device: torch.device | None = None) -> Iterator[Located]:
    """Detect, track and crop, cutting the aligned face on the frames the style-code mode needs.

    ``ahead > 0`` runs this in its own thread, up to ``ahead`` frames ahead of the caller (who
    must then not touch ``frames`` or ``detector`` until the iterator is exhausted or closed).
    ``device``: :meth:`ConvertConfig.crop_device`'s answer; not None: nothing is cut here, the
    faces carry their geometry and the invert stage cuts them on the model's device. None (the
    default): the crops are cut here, on the host.
    """
    aligned_every = 0 if cfg.invert.style_code == "first-frame" else cfg.invert.code_every
    located: Iterator = detect_crop.locate(frames, detector, cfg.face, size, float(fps or FALLBACK_FPS),
                                           aligned_every=aligned_every, cut=device is None)
    if cfg.drop_lost:
        located = (rec for rec in located if rec.faces)
    return run_ahead(located, ahead, "facestyle:find-faces") if ahead else located


def plan(located: Iterable[Located], fps: float | None, model: StyleGANEX, cfg: ConvertConfig,
         tap: Tap = _no_tap) -> Iterator[Coded]:
    """The temporal half: each face's W+ codes, smoothed over time when the mode asks for it."""
    cut = smooth.shot_cuts(cfg.smooth.shot_threshold) if cfg.invert.code_every > 1 else None
    items: Iterator = tap("codes", invert.codes(located, model, cfg.invert, cut=cut))
    if cfg.invert.style_code == "smoothed":
        items = tap("smooth", smooth.smooth(items, replace(cfg.smooth, fps=float(fps or cfg.smooth.fps))))
    return items


def render(coded: Iterable[Coded], model: StyleGANEX, cfg: ConvertConfig,
           tap: Tap = _no_tap, *, is_image: bool = False) -> Iterator[OutFrame]:
    """The per-frame half: x1 features, generator, paste-back.

    In full output mode each frame depends only on its own record (batching aside).
    """
    device = cfg.paste_device(model.latent_avg.device, is_image)
    items = tap("invert", invert.features(coded, model, cfg.invert))
    items = tap("generate", generate.generate(items, model, cfg.generate, keep_on_device=device is not None))
    nv12 = cfg.nvenc_zero_copy(model.latent_avg.device, is_image)
    return tap("paste", paste.paste(items, cfg.paste, device, nv12=nv12))


def convert_file(src: str | Path, dst: str | Path, model: StyleGANEX, detector: Detector, cfg: ConvertConfig,
                 progress: Progress | None = None) -> ConvertResult:
    """Convert one video or photo.

    Raises:
        InputError: unreadable input. NoFaceError: no face in the whole clip (``no_face="error"``).
        OutputError: the output cannot be written.
    """
    src, dst = Path(src), Path(dst)
    progress = progress or NullProgress()
    t0 = time.monotonic()
    video_out.check_destination(dst, cfg.video_out.overwrite)       # fail before any work
    reader = video_in.read(src, cfg.video_in)
    info = reader.info
    counter = _Counter()
    total = None if info.is_image else _expected_frames(info, cfg.video_in)
    progress.start(src.name, total)

    def counted_output(frames: Iterable[OutFrame]) -> Iterator[OutFrame]:
        for frame in frames:
            progress.update(1)
            yield frame

    with reader, cfg.precision.context(model.latent_avg.device):
        out = stages(counter.count_in(reader), info, model, detector, cfg, tap=counter.tap)
        out = _require_a_face(out, counter, cfg, src)
        repairs: list[str] = []
        written = video_out.write(_count_out(counted_output(out), counter), dst, cfg.video_out, info,
                                  audio_from=src, start=cfg.video_in.start, end=cfg.video_in.end, notes=repairs)
    result = ConvertResult(src, written, counter.frames, counter.frames_out, counter.with_face,
                           time.monotonic() - t0)
    result.repairs = repairs
    damage = ([] if reader.report.ok else [reader.report.summary()]) + [f"{src}: {r}" for r in repairs]
    if damage:
        result.damage = "; ".join(damage)
    progress.finish(**{k: v for k, v in result.as_dict().items() if k not in ("src",)})
    return result


def _count_out(frames: Iterable[OutFrame], counter: _Counter) -> Iterator[OutFrame]:
    for frame in frames:
        counter.frames_out += 1
        yield frame


def _require_a_face(frames: Iterable[OutFrame], counter: _Counter, cfg: ConvertConfig,
                    src: Path) -> Iterator[OutFrame]:
    """Pass frames on; at the end, fail (so the output is discarded) if no frame had a face."""
    yield from frames
    if counter.with_face == 0:
        if cfg.no_face == "error" or cfg.paste.mode == "crop":
            raise NoFaceError(f"{src}: no face found in {counter.frames} frame(s)"
                              + ("" if cfg.paste.mode == "crop" else " (use --no-face pass to copy it through)"))
        log.warning("%s: no face found; frames copied through unchanged", src)


def _expected_frames(info: video_in.VideoInfo, cfg: video_in.VideoInConfig) -> int | None:
    if not info.frame_count:
        return None
    if cfg.start is None and cfg.end is None:
        return info.frame_count
    if not info.duration or not info.fps:
        return None
    end = min(cfg.end if cfg.end is not None else info.duration, info.duration)
    return max(0, round((end - (cfg.start or 0.0)) * float(info.fps)))


def list_inputs(folder: Path) -> list[Path]:
    """Videos and photos directly inside ``folder`` (hidden and partial files skipped), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (p.suffix.lower() in VIDEO_SUFFIXES or is_image_path(p)))


def convert_folder(src: Path, dst: Path, model: StyleGANEX, detector: Detector, cfg: ConvertConfig,
                   tag: str, progress: Progress | None = None) -> list[ConvertResult]:
    """Convert every video and photo in ``src`` into ``dst`` (created); failures are recorded, not raised."""
    inputs = list_inputs(src)
    if not inputs:
        raise InputError(f"{src}: no videos or photos in this folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {dst}: {e.strerror or e}") from e
    results = []
    for path in inputs:
        out = default_output(path, tag, dst)
        try:
            results.append(convert_file(path, out, model, detector, cfg, progress))
        except FacestyleError as e:
            log.error("%s", e)
            results.append(ConvertResult(path, None, error=str(e)))
    return results
