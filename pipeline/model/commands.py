"""The command-line side of the models: ``facestyle models`` and ``facestyle checkpoint``
(parsers and handlers; ``cli.py`` adds them)."""
from __future__ import annotations

import argparse
import json


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline.model.registry import format_model_table, list_models

    statuses = list_models()
    if args.json:
        print(json.dumps([{"name": s.name, "family": s.info.family, "cached": s.cached,
                           "path": str(s.path), "description": s.info.description} for s in statuses]))
    else:
        print(format_model_table(statuses))
    return 0


def _cmd_checkpoint_random(args: argparse.Namespace) -> int:
    from pipeline.model.random_checkpoint import make_random_checkpoint, save_checkpoint

    ckpt = make_random_checkpoint(args.preset, args.seed)
    path = save_checkpoint(ckpt, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {path} (preset {args.preset}, seed {args.seed}; random weights, stylizes nothing)")
    return 0


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
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` and ``checkpoint`` to the ``facestyle`` parser."""
    from pipeline.frontend import add_command
    from pipeline.model.random_checkpoint import PRESETS

    models = add_command(sub, "models", _cmd_models, "list the official models and which are cached",
                         "List the official StyleGANEX models, what each does, and which are already downloaded "
                         "(cache: $FACESTYLE_MODEL_DIR or ~/.cache/facestyle).", show_defaults=False)
    models.add_argument("--json", action="store_true", help="print JSON")

    ck = sub.add_parser("checkpoint", help="make or inspect checkpoint files")
    ck_sub = ck.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    rnd = add_command(
        ck_sub, "random", _cmd_checkpoint_random, "write a checkpoint of seeded random weights (for tests and "
                                                  "benchmarks)",
        "Write a checkpoint of seeded RANDOM weights in the official StyleGANEX file layout. It exercises the whole "
        "pipeline at the real size (or a tiny one) but stylizes nothing: its output is coloured noise. Use an "
        "official checkpoint for real results.", show_defaults=False)
    rnd.add_argument("--preset", required=True, choices=list(PRESETS),
                     help="architecture: 'tiny' is a reduced-width toonify model for tests; the others are "
                          "the official model families at full size (about 1.2 GB)")
    rnd.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    rnd.add_argument("-o", "--output", required=True, help="file to write (.pt)")
    rnd.add_argument("--overwrite", action="store_true", help="replace an existing file")
    rnd.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    info = add_command(ck_sub, "info", _cmd_checkpoint_info, "describe a checkpoint file",
                       "Describe a checkpoint: model family, structure and size.", show_defaults=False)
    info.add_argument("checkpoint", help="checkpoint file (.pt)")
    info.add_argument("--verify", action="store_true", help="also build the model and load it strictly")
    info.add_argument("--json", action="store_true", help="print one JSON object")


__all__ = ["add_commands"]
