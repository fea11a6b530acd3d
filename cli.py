"""The ``facestyle`` command line: argument parsing, and the mapping of arguments to the
configuration dataclasses of :mod:`pipeline`. The work itself lives in the pipeline package.

Every error a user can cause ends as one line on stderr and a non-zero exit code (see README,
"Exit codes"); a traceback means a bug.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("facestyle")


def _cmd_checkpoint_random(args: argparse.Namespace) -> int:
    from pipeline.model.random_checkpoint import make_random_checkpoint, save_checkpoint

    ckpt = make_random_checkpoint(args.preset, args.seed)
    path = save_checkpoint(ckpt, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {path} (preset {args.preset}, seed {args.seed}; random weights, stylizes nothing)")
    return EXIT_OK


def _cmd_checkpoint_info(args: argparse.Namespace) -> int:
    from pipeline.model.checkpoint import build_model, read_checkpoint
    from pipeline.model.describe import describe_checkpoint

    ckpt = read_checkpoint(args.checkpoint)
    name = f"checkpoint {args.checkpoint}"
    info = describe_checkpoint(ckpt, name)
    if args.verify:
        build_model(ckpt, name=name)                 # strict load: raises CheckpointError on mismatch
        info["loads_strictly"] = True
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:20s} {value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from pipeline.model.random_checkpoint import PRESETS

    parser = argparse.ArgumentParser(
        prog="facestyle",
        description="Stylize faces in real footage with StyleGANEX models (toonify, editing, super-resolution).",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="logging detail on stderr (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ck = sub.add_parser("checkpoint", help="make or inspect checkpoint files")
    ck_sub = ck.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    rnd = ck_sub.add_parser(
        "random", help="write a checkpoint of seeded random weights (for tests and benchmarks)",
        description="Write a checkpoint of seeded RANDOM weights in the official StyleGANEX file layout. "
                    "It exercises the whole pipeline at the real size (or a tiny one) but stylizes nothing: "
                    "its output is coloured noise. Use an official checkpoint for real results.")
    rnd.add_argument("--preset", required=True, choices=list(PRESETS),
                     help="architecture: 'tiny' is a reduced-width toonify model for tests; the others are "
                          "the official model families at full size (about 1.2 GB)")
    rnd.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    rnd.add_argument("-o", "--output", required=True, help="file to write (.pt)")
    rnd.add_argument("--overwrite", action="store_true", help="replace an existing file")
    rnd.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    rnd.set_defaults(func=_cmd_checkpoint_random)

    info = ck_sub.add_parser("info", help="describe a checkpoint file",
                             description="Describe a checkpoint: model family, structure and size.")
    info.add_argument("checkpoint", help="checkpoint file (.pt)")
    info.add_argument("--verify", action="store_true", help="also build the model and load it strictly")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_checkpoint_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facestyle`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="facestyle: %(levelname)s: %(message)s")
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from pipeline.errors import FacestyleError

    try:
        return args.func(args)
    except FacestyleError as e:
        print(f"facestyle: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facestyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
