"""The convert options: :class:`ConvertOptions`, the one place each of them is written down (name,
type, default, choices, help), and its mapping onto :class:`~pipeline.convert.ConvertConfig`.

Every route takes exactly these options with the same defaults and checks, through the one mapper
in :mod:`pipeline.option_fields`: the command line (``convert``, ``watch``, ``bench``, ``submit``:
``--style-code smoothed``), the TOML config file (``style-code = "smoothed"``), the job service's
request (``{"style_code": "smoothed"}``, checked directly) and the VapourSynth filter's keyword
arguments (``style_code="smoothed"``). Defaults and choices that a stage owns are read from its
configuration dataclass, not typed again here.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.convert import NO_FACE, ConvertConfig
from pipeline.errors import UsageError
from pipeline.face.detect import DEFAULT_DETECTOR
from pipeline.media.codecs import CODECS
from pipeline.media.encoders import ENCODER_ROUTES
from pipeline.option_fields import check_choices, from_mapping, from_namespace, option, options_of, to_mapping
from pipeline.runtime.device import DEFAULT_THREADS, PRECISIONS, THREADS_HELP, Precision
from pipeline.stages.detect_crop import FACE_MODES, FaceConfig
from pipeline.stages.generate import GenerateConfig
from pipeline.stages.invert import STYLE_CODES, InvertConfig
from pipeline.stages.paste import MODES, PasteConfig
from pipeline.stages.smooth import FILTERS, SmoothConfig
from pipeline.stages.video_in import VideoInConfig
from pipeline.stages.video_out import VideoOutConfig

INFERENCE, FACES, OUTPUT = "inference", "faces", "output"


def _group_text(values: tuple[float, float, float]) -> str:
    """``(1.0, 1.0, 1.0)`` -> ``"1"``; ``(1.0, 0.5, 0.0)`` -> ``"1,0.5,0"``."""
    parts = [f"{v:g}" for v in values]
    return parts[0] if len(set(parts)) == 1 else ",".join(parts)


@dataclass(frozen=True)
class ConvertOptions:
    """The options of ``facestyle convert`` (and of every other route that converts), by their
    Python names; the command line spells them ``--style-code`` and so on.

    Build one with :meth:`from_mapping` (a service request, filter keyword arguments, a TOML table)
    or :meth:`from_args` (parsed arguments); :meth:`to_config` maps it onto the pipeline's
    configuration for a device.
    """

    model: str | None = option(None, "official model name (see 'facestyle models') or a checkpoint path")
    device: str = option("auto", "auto, cpu, cuda or cuda:N", group=INFERENCE)
    precision: str = option("fp32", "fp16 needs CUDA; bf16 is about 2x faster than fp32 on recent CPUs",
                            choices=PRECISIONS, group=INFERENCE)
    batch_size: int = option(
        0, "faces per batch (0: automatic: on a CPU at most 8 faces and the pixels of 8 crops of 128x128 in fp32 "
           "or 4 of 256x256 in bf16, which measured fastest there; on CUDA at most 16 faces and what fits in half "
           "the free memory)", group=INFERENCE)
    threads: int = option(DEFAULT_THREADS, THREADS_HELP, group=INFERENCE, job=False)
    hwaccel: str | None = option(
        VideoInConfig.hwaccel, "decode with this FFmpeg hardware device type (cuda, vaapi, videotoolbox, ...); "
                               "falls back to software decoding with a warning when it cannot start",
        metavar="TYPE", group=INFERENCE)
    strength: str = option(
        str(GenerateConfig.strength),
        "editing models (age, hair): scale of the edit (positive = the trained direction, as the official video "
        "script; negative reverses it), or keyframes seconds:strength,... for a linear ramp, e.g. 0:0,3:1.2",
        group=INFERENCE)
    direction: tuple[str, ...] = option(
        (), "a W+ editing direction (.npy or .pt, shape [512] or [18, 512], e.g. InterFaceGAN, GANSpace, StyleCLIP "
            "global directions) added to the codes at STRENGTH (default: --strength, with its keyframes); may be "
            "given several times; for the FFHQ-generator models (inversion, editing, sr), toonify at your risk",
        metavar="FILE[:STRENGTH]", group=INFERENCE)
    style_code: str = option(
        InvertConfig.style_code, "style codes from the first frame's aligned face (official, frozen), from every "
                                 "frame (follows the face, flickers), or from every frame smoothed over time",
        choices=STYLE_CODES, group=INFERENCE)
    code_every: int | None = option(
        None, "per-frame and smoothed codes: run the codes pass on every N-th frame (and a track's first and last "
              "frame and shot changes) and interpolate the codes in between; 1 runs it on every frame (default: "
              "per device, see pipeline.stages.keycodes.default_code_every)", metavar="N", group=INFERENCE)
    smooth_filter: str = option(
        SmoothConfig.filter, "smoothed codes: centred window (latency = window), causal average, or adaptive "
                             "One-Euro", choices=FILTERS, group=INFERENCE)
    smooth_strength: str = option(_group_text(SmoothConfig.strength),
                                  "smoothing per layer group: one value or coarse,middle,fine (0 = off, 1 = default)",
                                  group=INFERENCE)
    smooth_window: int = option(SmoothConfig.window, "smoothing look-ahead / time scale in frames", group=INFERENCE)
    face: str = option(FaceConfig.faces, "which faces to stylize", choices=FACE_MODES, group=FACES)
    detector: str = option(DEFAULT_DETECTOR, "face detector backend", group=FACES)
    detect_every: int = option(FaceConfig.detect_every, "run the detector every N frames, track between",
                               group=FACES)
    detect_max_side: int = option(720, "detect on a copy shrunk to at most this many pixels on the long side",
                                  group=FACES)
    no_face: str = option(ConvertConfig.no_face, "a clip with no face at all: fail, or copy it through with a "
                                                 "warning", choices=NO_FACE, group=FACES)
    drop_lost: bool = option(ConvertConfig.drop_lost, "drop frames where the face is lost (default: pass them "
                                                      "through unchanged)", group=FACES)
    output_mode: str = option(PasteConfig.mode, "full: stylized face blended back into the original frame; crop: "
                                                "the 4x crop only", choices=MODES, group=OUTPUT)
    feather: float = option(PasteConfig.feather, "soft edge of the pasted face (fraction)", group=OUTPUT)
    codec: str = option(VideoOutConfig.codec, "output video codec", choices=CODECS, group=OUTPUT)
    crf: int = option(VideoOutConfig.crf, "quality for h264/hevc/vp9 (lower is better)", group=OUTPUT)
    preset: str = option(VideoOutConfig.preset, "x264/x265 speed preset", group=OUTPUT)
    pix_fmt: str | None = option(VideoOutConfig.pix_fmt, "output pixel format (default: the codec's usual one)",
                                 group=OUTPUT)
    encoder: str = option(VideoOutConfig.encoder, "encode with PyAV's bundled FFmpeg, or pipe the frames to the "
                                                  "ffmpeg on PATH (for encoders only it has: h264_vaapi, "
                                                  "h264_videotoolbox...)", choices=ENCODER_ROUTES, group=OUTPUT)
    no_audio: bool = option(not VideoOutConfig.keep_audio, "drop the audio instead of copying it", group=OUTPUT)
    start: float | None = option(VideoInConfig.start, "start time in seconds", group=OUTPUT)
    end: float | None = option(VideoInConfig.end, "end time in seconds", group=OUTPUT)
    overwrite: bool = option(VideoOutConfig.overwrite, "replace an existing output", group=OUTPUT)

    def __post_init__(self) -> None:
        check_choices(self)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], *, job: bool = True) -> ConvertOptions:
        """Check a mapping of options (Python or command-line names; None = default) and build them.

        Args:
            options: names -> values; may include ``model``.
            job: refuse the options that belong to a process (``threads``), for jobs and filters.

        Raises:
            UsageError: unknown option, bad value or a process option in a job.
        """
        if job:
            for opt in options_of(cls):
                if not opt.spec.job and options.get(opt.name):
                    raise UsageError(f"option {opt.name!r} belongs to the process running the jobs, not to a job")
        return from_mapping(cls, options)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConvertOptions:
        """From the arguments :func:`add_convert_options` added (options a parser lacks keep their defaults)."""
        return from_namespace(cls, args)

    def as_dict(self, changed_only: bool = False, job_only: bool = False) -> dict[str, Any]:
        """By Python name, JSON-able: all, only those not at their default, or only job options."""
        return to_mapping(self, changed_only=changed_only, job_only=job_only)

    def require_model(self) -> str:
        """The model name or path. Raises UsageError when none was given."""
        if self.model is None:
            raise UsageError("no model given: use --model NAME|PATH (see 'facestyle models')")
        return self.model

    def to_config(self, device: Any, precision: Precision) -> ConvertConfig:
        """The pipeline's configuration for inference on ``device`` in ``precision``.

        Automatic batches (``batch_size`` 0) are sized for the device; an explicit size is exact.

        Raises:
            UsageError: a value or a combination of values the configuration rejects.
        """
        from pipeline.runtime.device import default_batch_pixels, default_batch_size
        from pipeline.stages.directions import parse_directions
        from pipeline.stages.keycodes import default_code_every

        batch = self.batch_size or default_batch_size(device)
        pixels = 0 if self.batch_size else default_batch_pixels(device, precision)
        try:
            strength, keyframes = parse_strength(self.strength)
            return ConvertConfig(
                video_in=VideoInConfig(start=self.start, end=self.end, hwaccel=self.hwaccel),
                face=FaceConfig(faces=self.face, detect_every=self.detect_every),
                invert=InvertConfig(batch_size=batch, style_code=self.style_code, batch_pixels=pixels,
                                    code_every=default_code_every(device) if self.code_every is None
                                    else self.code_every),
                smooth=SmoothConfig(filter=self.smooth_filter, strength=parse_group_strength(self.smooth_strength),
                                    window=self.smooth_window),
                generate=GenerateConfig(batch_size=batch, strength=strength, keyframes=keyframes, batch_pixels=pixels,
                                        directions=parse_directions(self.direction)),
                paste=PasteConfig(mode=self.output_mode, feather=self.feather),
                video_out=VideoOutConfig(codec=self.codec, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt,
                                         overwrite=self.overwrite, keep_audio=not self.no_audio, encoder=self.encoder),
                no_face=self.no_face, drop_lost=self.drop_lost, precision=precision)
        except ValueError as e:
            raise UsageError(str(e)) from e

    def check(self) -> None:
        """Every check that needs no device (values and combinations): what :meth:`to_config` checks,
        for a CPU. Raises UsageError."""
        import torch

        self.to_config(torch.device("cpu"), Precision())


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """Add the convert options to a parser (``--help`` sections: inference, faces, output)."""
    from pipeline.option_fields import add_arguments

    add_arguments(p, ConvertOptions)


def option_names() -> list[str]:
    """Python names of the convert options (``model`` excluded), e.g. ``style_code``."""
    return [o.name for o in options_of(ConvertOptions) if o.name != "model"]


def parse_options(options: Mapping[str, Any], *, job: bool = True) -> ConvertOptions:
    """Check a mapping of convert options and fill in the defaults (see :meth:`ConvertOptions.from_mapping`)."""
    return ConvertOptions.from_mapping(options, job=job)


def convert_config(args: argparse.Namespace | ConvertOptions, device: Any, precision: Precision) -> ConvertConfig:
    """Parsed arguments or :class:`ConvertOptions` -> ``ConvertConfig`` (see :meth:`ConvertOptions.to_config`)."""
    opts = args if isinstance(args, ConvertOptions) else ConvertOptions.from_args(args)
    return opts.to_config(device, precision)


def parse_strength(text: str | float) -> tuple[float, tuple[tuple[float, float], ...]]:
    """``--strength 0.8`` or keyframes ``--strength 0:0,2:1`` (seconds:strength, linear ramp)."""
    from pipeline.stages.generate import parse_keyframes

    text = str(text)
    if ":" in text:
        return GenerateConfig.strength, parse_keyframes(text)
    try:
        return float(text), ()
    except ValueError:
        raise ValueError(f"--strength {text!r}: give a number or keyframes like 0:0,2:1") from None


def parse_group_strength(text: str | float) -> tuple[float, float, float]:
    """``--smooth-strength 1`` or ``coarse,middle,fine`` such as ``1,0.5,0``."""
    parts = [p for p in str(text).split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--smooth-strength {text!r}: give one number or three (coarse,middle,fine)") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f"--smooth-strength {text!r}: give one number or three (coarse,middle,fine)")
    return values[0], values[1], values[2]
