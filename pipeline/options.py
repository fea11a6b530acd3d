"""The convert options: their names, help and defaults, and their mapping onto
:class:`~pipeline.convert.ConvertConfig`. The one place that owns them.

The command line (``convert``, ``watch``, ``bench``, ``submit``) adds them to its parsers; the job
service and the VapourSynth filter take the same options as a mapping with the Python spelling of
the flags (``{"style_code": "smoothed", "smooth_strength": "1,0.5,0"}``) and run it through the same
parser, so every route accepts exactly the same options with the same defaults and checks.
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, NoReturn

from pipeline.errors import UsageError
from pipeline.runtime.device import Precision

# Options that describe the process rather than the job: a job (service, filter) may not set them.
PROCESS_OPTIONS = ("threads",)


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """The options that say how to convert (model, inference, faces, output)."""
    p.add_argument("--model", help="official model name (see 'facestyle models') or a checkpoint path")
    g = p.add_argument_group("inference")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="fp16 needs CUDA; bf16 is about 2x faster than fp32 on recent CPUs")
    g.add_argument("--batch-size", type=int, default=0,
                   help="faces per batch (0: automatic: on a CPU at most 8 faces and the pixels of 8 crops of "
                        "128x128 in fp32 or 4 of 256x256 in bf16, which measured fastest there; on CUDA at most "
                        "16 faces and what fits in half the free memory)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads for inference (0: PyTorch default)")
    g.add_argument("--hwaccel", default=None, metavar="TYPE",
                   help="decode with this FFmpeg hardware device type (cuda, vaapi, videotoolbox, ...); "
                        "falls back to software decoding with a warning when it cannot start")
    g.add_argument("--strength", default="1.0",
                   help="editing models (age, hair): scale of the edit (positive = the trained direction, as the "
                        "official video script; negative reverses it), or keyframes seconds:strength,... for a "
                        "linear ramp, e.g. 0:0,3:1.2")
    g.add_argument("--style-code", default="smoothed", choices=["first-frame", "per-frame", "smoothed"],
                   help="style codes from the first frame's aligned face (official, frozen), from every frame "
                        "(follows the face, flickers), or from every frame smoothed over time")
    g.add_argument("--code-every", type=int, default=1, metavar="N",
                   help="per-frame and smoothed codes: run the codes pass on every N-th frame only and hold the "
                        "codes in between (the smoothing filters the steps); 2 or 3 saves most of its cost")
    g.add_argument("--smooth-filter", default="gaussian", choices=["gaussian", "ema", "one-euro"],
                   help="smoothed codes: centred window (latency = window), causal average, or adaptive One-Euro")
    g.add_argument("--smooth-strength", default="1",
                   help="smoothing per layer group: one value or coarse,middle,fine (0 = off, 1 = default)")
    g.add_argument("--smooth-window", type=int, default=6, help="smoothing look-ahead / time scale in frames")
    g = p.add_argument_group("faces")
    g.add_argument("--face", default="largest", choices=["largest", "all"], help="which faces to stylize")
    g.add_argument("--detector", default="dlib", help="face detector backend")
    g.add_argument("--detect-every", type=int, default=1, help="run the detector every N frames, track between")
    g.add_argument("--detect-max-side", type=int, default=720,
                   help="detect on a copy shrunk to at most this many pixels on the long side")
    g.add_argument("--no-face", default="error", choices=["error", "pass"],
                   help="a clip with no face at all: fail, or copy it through with a warning")
    g.add_argument("--drop-lost", action="store_true", help="drop frames where the face is lost "
                   "(default: pass them through unchanged)")
    g = p.add_argument_group("output")
    g.add_argument("--output-mode", default="full", choices=["full", "crop"],
                   help="full: stylized face blended back into the original frame; crop: the 4x crop only")
    g.add_argument("--feather", type=float, default=0.08, help="soft edge of the pasted face (fraction)")
    g.add_argument("--codec", default="h264", choices=["h264", "hevc", "prores", "ffv1", "vp9"])
    g.add_argument("--crf", type=int, default=18, help="quality for h264/hevc/vp9 (lower is better)")
    g.add_argument("--preset", default="medium", help="x264/x265 speed preset")
    g.add_argument("--pix-fmt", default=None, help="output pixel format (default: the codec's usual one)")
    g.add_argument("--no-audio", action="store_true", help="drop the audio instead of copying it")
    g.add_argument("--start", type=float, default=None, help="start time in seconds")
    g.add_argument("--end", type=float, default=None, help="end time in seconds")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _option_parser() -> _Parser:
    p = _Parser(prog="options", add_help=False, exit_on_error=False)
    add_convert_options(p)
    return p


def option_names() -> list[str]:
    """Python names of the convert options (``model`` excluded), e.g. ``style_code``."""
    return [a.dest for a in _option_parser()._actions if a.dest != "model"]


def options_to_argv(options: Mapping[str, Any]) -> list[str]:
    """``{"style_code": "smoothed", "drop_lost": True}`` -> ``["--style-code", "smoothed", "--drop-lost"]``.

    ``None`` and ``False`` leave an option at its default. Raises :class:`UsageError` for unknown
    names and for values that are neither numbers, strings nor booleans.
    """
    actions = {a.dest: a for a in _option_parser()._actions}
    argv: list[str] = []
    for name, value in options.items():
        key = name.replace("-", "_")
        action = actions.get(key)
        if action is None or key == "help":
            raise UsageError(f"unknown option {name!r}")
        flag = action.option_strings[-1]
        if value is None or value is False:
            continue
        if isinstance(action, argparse._StoreTrueAction):     # noqa: SLF001 - argparse has no public type
            if value is not True:
                raise UsageError(f"option {name!r} is a switch: give true or false")
            argv.append(flag)
            continue
        if value is True or not isinstance(value, (str, int, float)):
            raise UsageError(f"option {name!r} needs a number or a string, got {value!r}")
        argv += [flag, str(value)]
    return argv


def parse_options(options: Mapping[str, Any], *, job: bool = True) -> argparse.Namespace:
    """Check a mapping of convert options and fill in the defaults, exactly as the command line does.

    Args:
        options: Python option names -> values; may include ``model``.
        job: refuse the options that belong to a process (``threads``), for jobs and filters.

    Raises:
        UsageError: unknown option, bad value or a process option in a job.
    """
    if job:
        for name in PROCESS_OPTIONS:
            if options.get(name):
                raise UsageError(f"option {name!r} belongs to the process running the jobs, not to a job")
    try:
        return _option_parser().parse_args(options_to_argv(options))
    except argparse.ArgumentError as e:
        raise UsageError(str(e)) from None


def convert_config(args: argparse.Namespace, device: object, precision: Precision) -> Any:
    """Map the convert options onto the pipeline's configuration dataclasses (a ``ConvertConfig``).

    Raises:
        UsageError: a value the configuration rejects.
    """
    from pipeline.convert import ConvertConfig
    from pipeline.runtime.device import default_batch_pixels, default_batch_size
    from pipeline.stages.detect_crop import FaceConfig
    from pipeline.stages.generate import GenerateConfig
    from pipeline.stages.invert import InvertConfig
    from pipeline.stages.paste import PasteConfig
    from pipeline.stages.smooth import SmoothConfig
    from pipeline.stages.video_in import VideoInConfig
    from pipeline.stages.video_out import VideoOutConfig

    batch = args.batch_size or default_batch_size(device)
    pixels = 0 if args.batch_size else default_batch_pixels(device, precision)    # an explicit size is exact
    try:
        strength, keyframes = parse_strength(args.strength)
        smooth = SmoothConfig(filter=args.smooth_filter, strength=parse_group_strength(args.smooth_strength),
                              window=args.smooth_window)
        video_out = VideoOutConfig(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt,
                                   overwrite=args.overwrite, keep_audio=not args.no_audio)
        # On CUDA the paste and the RGB -> YUV 4:2:0 conversion run on the GPU (see pipeline.stages.paste)
        paste_device = (str(device) if getattr(device, "type", None) == "cuda" and args.output_mode == "full"
                        and video_out.pixel_format == "yuv420p" else None)
        return ConvertConfig(
            video_in=VideoInConfig(start=args.start, end=args.end, hwaccel=args.hwaccel),
            face=FaceConfig(faces=args.face, detect_every=args.detect_every),
            invert=InvertConfig(batch_size=batch, style_code=args.style_code, batch_pixels=pixels,
                                code_every=args.code_every),
            smooth=smooth,
            generate=GenerateConfig(batch_size=batch, strength=strength, keyframes=keyframes, batch_pixels=pixels,
                                    on_device=paste_device is not None),
            paste=PasteConfig(mode=args.output_mode, feather=args.feather, device=paste_device),
            video_out=video_out, no_face=args.no_face, drop_lost=args.drop_lost, precision=precision)
    except ValueError as e:
        raise UsageError(str(e)) from e


def parse_strength(text: str | float) -> tuple[float, tuple[tuple[float, float], ...]]:
    """``--strength 0.8`` or keyframes ``--strength 0:0,2:1`` (seconds:strength, linear ramp)."""
    from pipeline.stages.generate import parse_keyframes

    text = str(text)
    if ":" in text:
        return 1.0, parse_keyframes(text)
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
