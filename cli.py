"""The ``facestyle`` command line: the parser, assembled from the commands of each front end, and
the entry point. The ``convert`` command lives here; the others beside what they drive
(:mod:`pipeline.daemon.commands`, :mod:`pipeline.service.commands`, :mod:`pipeline.tools.commands`,
:mod:`pipeline.model.commands`). The options and their defaults come from the configuration
dataclasses (:mod:`pipeline.options`), what every route opens from :mod:`pipeline.frontend`.

Every error a user can cause ends as one line on stderr and a non-zero exit code (see README,
"Exit codes"); a traceback means a bug.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# Inference threads share the CPU with the decode and encode threads (and other processes on a
# render box); OpenMP's spin-wait then burns the cores the others need. Measured on 2 cores: 2.3x
# slower wall with competing processes; on a quiet machine equal wall, 25-35% less CPU when passive.
# Set here, in the entry point, before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pipeline.cluster.config import RayConfig
from pipeline.daemon.commands import add_commands as add_daemon_commands
from pipeline.errors import FacestyleError, InputError, UsageError
from pipeline.frontend import (
    LOG_LEVELS,
    FrontEnd,
    ReportOptions,
    add_command,
    config_path,
    read_config,
    report_folder,
)
from pipeline.model.commands import add_commands as add_model_commands
from pipeline.option_fields import add_arguments, from_namespace
from pipeline.options import ConvertOptions, add_convert_options
from pipeline.runtime.cpu_allocator import keep_freed_memory
from pipeline.service.commands import add_commands as add_service_commands
from pipeline.tools.commands import add_commands as add_tool_commands

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.convert import convert_file, convert_folder, default_output
    from pipeline.progress import make_progress

    options = ConvertOptions.from_args(args)
    options.require_model()
    ray = from_namespace(RayConfig, args)
    if ray.address is not None:                      # several inputs, chunks, workers: pipeline.cluster
        from pipeline.cluster.commands import convert_command

        return convert_command(args.input, args.output, options, ray, from_namespace(ReportOptions, args))
    if len(args.input) > 1:
        raise UsageError("several inputs are converted with --ray (or give a folder)")
    src = Path(args.input[0])
    if not src.exists():
        raise InputError(f"{src}: file not found")
    front = FrontEnd.open(options)
    report = from_namespace(ReportOptions, args)
    progress = make_progress(report.mode)
    model = front.load_model(progress=report.mode == "bar")
    detector = front.make_detector()
    if src.is_dir():
        dst = Path(args.output) if args.output else src.with_name(f"{src.name}_{front.tag}")
        results = convert_folder(src, dst, model, detector, front.config, front.tag, progress)
        return report_folder(results, report)
    dst = Path(args.output) if args.output else default_output(src, front.tag)
    result = convert_file(src, dst, model, detector, front.config, progress)
    if result.damage:
        print(f"facestyle: warning: damaged input, converted what could be decoded: {result.damage}",
              file=sys.stderr)
    if not report.quiet and report.progress != "json":
        fps = result.frames_out / result.seconds if result.seconds else 0.0
        print(f"wrote {result.dst} ({result.frames_out} frames, {result.frames_with_face} with a face, "
              f"{fps:.2f} frames/s)")
    return EXIT_OK


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "convert", _cmd_convert, "stylize the faces in a video, a photo or a folder of them",
                    "Stylize the faces in a video (audio kept), a photo, or every video and photo in a folder. "
                    "Defaults may also come from a TOML config file ([convert] table; see README).")
    p.add_argument("input", nargs="+", help="video, photo, or folder of them (several with --ray)")
    p.add_argument("-o", "--output", help="output file (folder for a folder input); default: "
                   "<input>_<model>.mp4 beside the input")
    add_convert_options(p)
    groups: dict = {}
    add_arguments(p, ReportOptions, groups=groups)
    add_arguments(p, RayConfig, groups=groups)
    groups["reporting"].add_argument("--config", help="TOML file with defaults for these options ([convert] table)")


def build_parser() -> argparse.ArgumentParser:
    """The ``facestyle`` parser with every command."""
    parser = argparse.ArgumentParser(
        prog="facestyle",
        description="Stylize faces in real footage with StyleGANEX models (toonify, editing, super-resolution).",
    )
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS,
                        help="logging detail on stderr (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_convert(sub)
    add_daemon_commands(sub)
    add_tool_commands(sub)
    add_service_commands(sub)
    add_model_commands(sub)
    parser.set_defaults(commands=sub.choices)
    return parser


def _with_config_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          argv: Sequence[str] | None) -> argparse.Namespace:
    """Re-parse with the config file's [convert] table as the command's defaults (command line wins)."""
    path = config_path(args.config)
    if path is None:
        return args
    args.commands[args.command].set_defaults(**read_config(path))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facestyle`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="facestyle: %(levelname)s: %(message)s")
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if hasattr(args, "config"):                  # convert, watch, submit
            args = _with_config_defaults(parser, args, argv)
        return args.func(args)
    except FacestyleError as e:
        print(f"facestyle: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facestyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
