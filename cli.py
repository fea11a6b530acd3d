"""The ``facestyle`` command line: argument parsing, and the mapping of arguments to the
configuration dataclasses of :mod:`pipeline`. The work itself lives in the pipeline package.

Every error a user can cause ends as one line on stderr and a non-zero exit code (see README,
"Exit codes"); a traceback means a bug.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

# Inference threads share the CPU with the decode and encode threads (and other processes on a
# render box); OpenMP's spin-wait then burns the cores the others need. Measured on 2 cores: 2.3x
# slower wall with competing processes; on a quiet machine equal wall, 25-35% less CPU when passive.
# Set here, in the entry point, before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pipeline.options import add_convert_options, convert_config, option_names
from pipeline.runtime.cpu_allocator import keep_freed_memory
from pipeline.service.commands import add_commands as add_service_commands

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


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from pipeline.convert import convert_file, convert_folder, default_output
    from pipeline.errors import InputError, UsageError
    from pipeline.face.detect import make_detector
    from pipeline.model import load_model
    from pipeline.model.registry import resolve_model
    from pipeline.progress import make_progress
    from pipeline.runtime.device import resolve_device, resolve_precision

    if args.model is None:
        raise UsageError("no model given: use --model NAME|PATH (see 'facestyle models')")
    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{src}: file not found")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = convert_config(args, device, precision)
    quiet = args.quiet or args.progress == "none"
    progress = make_progress("json" if args.progress == "json" else ("none" if quiet else "bar"))
    ckpt = resolve_model(args.model, progress=not quiet and args.progress != "json")
    model = load_model(ckpt, device=device, dtype=precision.params)
    if model.arch.input_nc != 3:
        raise UsageError(f"{args.model} translates {model.arch.input_nc}-channel sketches/masks, not video frames; "
                         "use it from the Python API")
    detector = make_detector(args.detector, max_side=args.detect_max_side)
    tag = Path(args.model).stem if Path(args.model).suffix else args.model
    if src.is_dir():
        dst = Path(args.output) if args.output else src.with_name(f"{src.name}_{tag}")
        results = convert_folder(src, dst, model, detector, cfg, tag, progress)
        failed = [r for r in results if not r.ok]
        if args.progress == "json":
            print(json.dumps({"event": "summary", "converted": len(results) - len(failed), "failed": len(failed),
                              "results": [r.as_dict() for r in results]}))
        elif not args.quiet:
            for r in results:
                detail = f": {r.error}" if r.error else f" -> {r.dst}"
                print(f"{'ok    ' if r.ok else 'FAILED'} {r.src.name}{detail}")
            print(f"{len(results) - len(failed)} converted, {len(failed)} failed")
        return EXIT_OK if not failed else EXIT_ERROR
    dst = Path(args.output) if args.output else default_output(src, tag)
    result = convert_file(src, dst, model, detector, cfg, progress)
    if result.damage:
        print(f"facestyle: warning: damaged input, converted what could be decoded: {result.damage}",
              file=sys.stderr)
    if not args.quiet and args.progress != "json":
        fps = result.frames_out / result.seconds if result.seconds else 0.0
        print(f"wrote {result.dst} ({result.frames_out} frames, {result.frames_with_face} with a face, "
              f"{fps:.2f} frames/s)")
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from pipeline.convert import convert_file
    from pipeline.daemon.watch import WatchConfig, WatchDaemon
    from pipeline.errors import UsageError
    from pipeline.face.detect import make_detector
    from pipeline.model import load_model
    from pipeline.model.registry import resolve_model
    from pipeline.runtime.device import resolve_device, resolve_precision

    level = args.watch_log_level or ("info" if args.log_level == "warning" else args.log_level)
    logging.getLogger().setLevel(getattr(logging, level.upper()))
    if args.model is None:
        raise UsageError("no model given: use --model NAME|PATH (see 'facestyle models')")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = convert_config(args, device, precision)
    tag = Path(args.model).stem if Path(args.model).suffix else args.model
    options = {"model": args.model, "tag": tag, **{k: getattr(args, k) for k in option_names()}}
    try:
        wcfg = WatchConfig(inbox=Path(args.inbox), outbox=Path(args.out), tag=tag, options=options,
                           state=Path(args.state) if args.state else None, settle=args.settle, poll=args.poll,
                           workers=args.workers, retries=args.retries, retry_delay=args.retry_delay,
                           keep_inputs=args.keep_inputs, on_stop=args.on_stop, overwrite=args.overwrite)
    except ValueError as e:
        raise UsageError(str(e)) from e
    with WatchDaemon(wcfg) as daemon:                 # folders and locks first: a second daemon fails fast
        daemon.notifier.status(f"loading model {args.model}")
        model = load_model(resolve_model(args.model, progress=False), device=device, dtype=precision.params)
        if model.arch.input_nc != 3:
            raise UsageError(f"{args.model} translates {model.arch.input_nc}-channel sketches/masks, not video "
                             "frames")

        def make_converter():                        # one per worker: the model is shared, the detector not
            detector = make_detector(args.detector, max_side=args.detect_max_side)
            return lambda src, dst, progress: convert_file(src, dst, model, detector, cfg, progress)

        return daemon.run(make_converter)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.daemon.journal import Journal, format_jobs
    from pipeline.errors import UsageError

    if (args.outbox is None) == (args.state is None):
        raise UsageError("give the outbox (OUTBOX) or the state folder (--state DIR), one of them")
    state = Path(args.state) if args.state else Path(args.outbox) / ".facestyle"
    with Journal(state / "journal.sqlite", readonly=True) as journal:
        if args.status:
            queue, history = [], journal.jobs(args.status, limit=args.limit)
        else:
            queue, history = journal.queue(), journal.history(limit=args.limit)
        counts = journal.counts()
    if args.json:
        print(json.dumps({"jobs": [j.as_dict() for j in [*queue, *history]], "counts": counts}))
    else:
        print(format_jobs(queue, history, counts))
    return EXIT_OK


def _add_watch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch", help="watch a folder and convert every video or photo dropped into it (a daemon)",
        description="Convert every video and photo that arrives in INBOX into OUTBOX, once each, with the model "
                    "loaded once. A file is taken when its size and mtime have not changed for --settle seconds. "
                    "Converted inputs move to INBOX/done/, failed ones to INBOX/failed/ with <name>.error.json. "
                    "The job journal (SQLite) and lock live in the state folder; 'facestyle jobs' lists them. "
                    "SIGTERM/SIGINT stop gracefully. See README, 'Watch folder (render boxes)'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inbox", help="folder to watch (not recursive)")
    p.add_argument("-o", "--out", required=True, help="folder for the outputs (<stem>_<model>.mp4), created")
    g = p.add_argument_group("watching")
    g.add_argument("--state", default=None, help="folder for the job journal and the lock "
                   "(default: OUTBOX/.facestyle; use a local disk when OUTBOX is a network share)")
    g.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="list the inbox every SECONDS instead of waiting for file-system events (network shares)")
    g.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                   help="take a file once its size and mtime have not changed for this long")
    g.add_argument("--workers", type=int, default=1, help="jobs converted at the same time (one model)")
    g.add_argument("--retries", type=int, default=2, help="retry a failed job this many times")
    g.add_argument("--retry-delay", type=float, default=30.0, metavar="SECONDS",
                   help="wait before the first retry, doubled for each further one")
    g.add_argument("--keep-inputs", action="store_true",
                   help="leave converted inputs in the inbox (the journal remembers them) instead of done/")
    g.add_argument("--on-stop", default="finish", choices=["finish", "requeue"],
                   help="on SIGTERM/SIGINT: finish the running jobs, or stop them and put them back in the queue "
                        "(a second signal always does the latter)")
    g.add_argument("--log-level", dest="watch_log_level", default=None,
                   choices=["debug", "info", "warning", "error"], help="logging detail on stderr (default: info)")
    g.add_argument("--config", help="TOML file with defaults for the convert options ([convert] table)")
    add_convert_options(p)
    p.set_defaults(func=_cmd_watch)

    j = sub.add_parser("jobs", help="list the queue and history of a watch folder's job journal",
                       description="List the jobs of a 'facestyle watch' journal: running and queued first, then "
                                   "the most recent finished ones, then the counts per state.")
    j.add_argument("outbox", nargs="?", help="the watch folder's OUTBOX (journal in OUTBOX/.facestyle)")
    j.add_argument("--state", help="the state folder, if the daemon was started with --state")
    j.add_argument("--status", action="append", choices=["queued", "running", "done", "failed"],
                   help="only jobs in this state (repeatable)")
    j.add_argument("-n", "--limit", type=int, default=50, help="at most this many finished jobs")
    j.add_argument("--json", action="store_true", help="print one JSON object")
    j.set_defaults(func=_cmd_jobs)


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline.model.registry import format_model_table, list_models

    statuses = list_models()
    if args.json:
        print(json.dumps([{"name": s.name, "family": s.info.family, "cached": s.cached,
                           "path": str(s.path), "description": s.info.description} for s in statuses]))
    else:
        print(format_model_table(statuses))
    return EXIT_OK


def _cmd_metrics_flicker(args: argparse.Namespace) -> int:
    from pipeline.tools.metrics import flicker

    report = flicker(args.input, args.output, max_frames=args.max_frames, flow_size=args.flow_size)
    print(json.dumps(report.as_dict()) if args.json else report.as_table())
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import torch

    from pipeline.errors import UsageError
    from pipeline.face.detect import make_detector
    from pipeline.model import load_model
    from pipeline.model.checkpoint import build_model
    from pipeline.model.random_checkpoint import make_random_checkpoint
    from pipeline.model.registry import resolve_model
    from pipeline.runtime.device import resolve_device, resolve_precision
    from pipeline.tools.bench import run_bench

    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model = load_model(resolve_model(args.model, progress=False), device=device, dtype=precision.params)
    else:                              # the official size, random weights: the same compute as a real model
        model = build_model(make_random_checkpoint(args.random_preset, 0), device=device, dtype=precision.params)
    if args.input is not None and not Path(args.input).is_file():
        raise UsageError(f"{args.input}: not a file")
    cfg = convert_config(args, device, precision)
    detector = make_detector(args.detector, max_side=args.detect_max_side) if args.input else None
    w, _, h = args.size.partition("x")
    with tempfile.TemporaryDirectory(prefix="facestyle-bench-") as tmp:
        report = run_bench(Path(args.input) if args.input else None, model, detector, cfg, frames=args.frames,
                           synthetic_size=(int(w), int(h)), workdir=Path(tmp))
    print(json.dumps(report.as_dict()) if args.json else report.as_table())
    return EXIT_OK


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from pipeline.model.random_checkpoint import PRESETS

    p = sub.add_parser(
        "bench", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="time the real pipeline per stage, against this machine's measured peak",
        description="Run the real pipeline on INPUT (or on a synthetic clip with a fixed synthetic face) and "
                    "print per stage (decode, detect, invert, smooth, generate, paste, encode) frames/s and share "
                    "of wall time, the achieved GFLOP/s of invert and generate next to the peak of a matmul and a "
                    "512-channel 3x3 conv probe, and the overlap efficiency (slowest stage alone / wall time). "
                    "Without --model it uses random weights of the official size.")
    p.add_argument("input", nargs="?", help="a clip with a face (default: synthetic)")
    p.add_argument("--random-preset", default="toonify", choices=list(PRESETS),
                   help="architecture of the random model when no --model is given")
    p.add_argument("--frames", type=int, default=30, help="frames to run")
    p.add_argument("--size", default="1920x1080", help="synthetic clip size WxH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_convert_options(p)
    p.set_defaults(func=_cmd_bench)


def _add_metrics(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("metrics", help="measure a conversion (temporal consistency)")
    m_sub = m.add_subparsers(dest="metrics_command", metavar="METRIC")
    f = m_sub.add_parser(
        "flicker", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="warping error and responsiveness of OUTPUT against the motion of INPUT",
        description="Temporal consistency of a stylized clip: the warping error of OUTPUT under optical flow "
                    "computed on INPUT (mean absolute difference, 0-255 levels, inside the face region; the "
                    "input's own value is the floor), and responsiveness (how much of the input's motion the "
                    "output follows: 1 = all, 0 = frozen). Both clips must have the same frames.")
    f.add_argument("input", help="the source clip")
    f.add_argument("output", help="the stylized clip (full output mode)")
    f.add_argument("--max-frames", type=int, default=None, help="compare only the first N frames")
    f.add_argument("--flow-size", type=int, default=640, help="long side of the frames the flow is computed on")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=_cmd_metrics_flicker)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="stylize the faces in a video, a photo or a folder of them",
        description="Stylize the faces in a video (audio kept), a photo, or every video and photo in a folder. "
                    "Defaults may also come from a TOML config file ([convert] table; see README).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="video, photo, or folder of them")
    p.add_argument("-o", "--output", help="output file (folder for a folder input); default: "
                   "<input>_<model>.mp4 beside the input")
    add_convert_options(p)
    g = p.add_argument_group("reporting")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    g.add_argument("--progress", default="bar", choices=["bar", "json", "none"],
                   help="json: one JSON object per line on stdout, for programs that drive us")
    g.add_argument("--config", help="TOML file with defaults for these options ([convert] table)")
    p.set_defaults(func=_cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.model.random_checkpoint import PRESETS

    parser = argparse.ArgumentParser(
        prog="facestyle",
        description="Stylize faces in real footage with StyleGANEX models (toonify, editing, super-resolution).",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="logging detail on stderr (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_convert(sub)
    _add_watch(sub)
    _add_metrics(sub)
    _add_bench(sub)
    add_service_commands(sub)
    models = sub.add_parser("models", help="list the official models and which are cached",
                            description="List the official StyleGANEX models, what each does, and which are "
                                        "already downloaded (cache: $FACESTYLE_MODEL_DIR or ~/.cache/facestyle).")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_cmd_models)

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


def _config_path(args: argparse.Namespace) -> str | None:
    import os
    from pathlib import Path

    if args.config:
        return args.config
    env = os.environ.get("FACESTYLE_CONFIG")
    if env:
        return env
    default = Path.home() / ".config" / "facestyle" / "config.toml"
    return str(default) if default.is_file() else None


def _with_config_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          argv: Sequence[str] | None) -> argparse.Namespace:
    """Re-parse with the [convert] table of the TOML config file as defaults (command line wins)."""
    path = _config_path(args)
    if path is None:
        return args
    try:
        import tomllib
    except ModuleNotFoundError:                      # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh).get("convert", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        parser.exit(EXIT_USAGE, f"facestyle: error: cannot read config file {path}: {e}\n")
    commands = parser._subparsers._group_actions[0].choices   # noqa: SLF001 - argparse has no API
    known = {a.dest for a in commands["convert"]._actions}
    defaults = {k.replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(set(defaults) - known - {"help"})
    if unknown:
        parser.exit(EXIT_USAGE, f"facestyle: error: config file {path}: unknown option(s) {', '.join(unknown)}\n")
    sub = commands[args.command]                     # watch takes the convert options it has (not -o, -q...)
    sub.set_defaults(**{k: v for k, v in defaults.items() if k in {a.dest for a in sub._actions}})
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facestyle`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    if getattr(args, "command", None) in ("convert", "watch", "submit"):
        args = _with_config_defaults(parser, args, argv)
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
