"""The command-line side of the watch-folder daemon: ``facestyle watch`` and ``facestyle jobs``
(parsers and handlers; ``cli.py`` adds them)."""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cluster.config import RayConfig
from pipeline.errors import UsageError
from pipeline.frontend import LOG_LEVELS, add_command
from pipeline.option_fields import add_arguments, from_namespace
from pipeline.options import ConvertOptions, add_convert_options

if TYPE_CHECKING:
    from pipeline.convert import ConvertResult


def _cmd_watch(args: argparse.Namespace) -> int:
    from pipeline.convert import convert_file
    from pipeline.daemon.watch import WatchConfig, WatchDaemon
    from pipeline.frontend import FrontEnd

    level = args.watch_log_level or ("info" if args.log_level == "warning" else args.log_level)
    logging.getLogger().setLevel(getattr(logging, level.upper()))
    opts = ConvertOptions.from_args(args)
    name = opts.require_model()
    front = FrontEnd.open(opts)
    recorded = {"model": name, "tag": front.tag, **{k: v for k, v in opts.as_dict().items() if k != "model"}}
    try:
        cfg = from_namespace(WatchConfig, args, inbox=Path(args.inbox), outbox=Path(args.out), tag=front.tag,
                             options=recorded, overwrite=opts.overwrite)
    except ValueError as e:
        raise UsageError(str(e)) from e
    rcfg = from_namespace(RayConfig, args)
    if rcfg.address is not None:
        from pipeline.cluster.actors import import_ray

        import_ray()                                 # Ray missing: one line now, before any folder is made
    if rcfg.address is not None and cfg.workers > 1:
        logging.getLogger(__name__).warning("--workers %d: with --ray the jobs go to the cluster one at a time, "
                                            "each spread over all its workers", cfg.workers)
        cfg = replace(cfg, workers=1)
    with WatchDaemon(cfg) as daemon:                 # folders and locks first: a second daemon fails fast
        if rcfg.address is not None:
            return _watch_on_ray(daemon, opts, rcfg)
        daemon.notifier.status(f"loading model {name}")
        model = front.load_model()

        def make_converter():                        # one per worker: the model is shared, the detector not
            detector = front.make_detector()
            return lambda src, dst, progress: convert_file(src, dst, model, detector, front.config, progress)

        return daemon.run(make_converter)


def _watch_on_ray(daemon, opts: ConvertOptions, rcfg: RayConfig) -> int:  # noqa: ANN001 - WatchDaemon
    """Serve the inbox with every job converted on the Ray cluster: one connection and one set of
    workers (the model loaded once) for the daemon's lifetime, stopped when it ends."""
    from pipeline.cluster.driver import RaySession
    from pipeline.model.registry import resolve_model

    daemon.notifier.status(f"finding model {opts.require_model()}")
    resolve_model(opts.require_model(), progress=False)    # a missing checkpoint fails now, not at a job
    daemon.notifier.status(f"connecting to Ray ({rcfg.address})")
    with RaySession(rcfg) as session:
        def convert(src: Path, dst: Path, progress) -> ConvertResult:  # noqa: ANN001 - watch._JobProgress
            [result] = session.convert([(src, dst)], opts, progress, src.name, check=progress.check)
            if result.exception is not None:
                raise result.exception
            return result

        return daemon.run(lambda: convert)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from pipeline.daemon.journal import Journal, format_jobs

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
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``watch`` and ``jobs`` to the ``facestyle`` parser."""
    from pipeline.daemon.journal import STATES
    from pipeline.daemon.watch import WatchConfig

    p = add_command(
        sub, "watch", _cmd_watch, "watch a folder and convert every video or photo dropped into it (a daemon)",
        "Convert every video and photo that arrives in INBOX into OUTBOX, once each, with the model loaded once. A "
        "file is taken when its size and mtime have not changed for --settle seconds. Converted inputs move to "
        "INBOX/done/, failed ones to INBOX/failed/ with <name>.error.json. The job journal (SQLite) and lock live in "
        "the state folder; 'facestyle jobs' lists them. SIGTERM/SIGINT stop gracefully. With --ray ADDRESS every job "
        "runs on a Ray cluster (one at a time, spread over all its workers). See README, 'Watch folder (render "
        "boxes)'.")
    p.add_argument("inbox", help="folder to watch (not recursive)")
    p.add_argument("-o", "--out", required=True, help="folder for the outputs (<stem>_<model>.mp4), created")
    groups: dict = {}
    add_arguments(p, WatchConfig, groups=groups)
    g = groups["watching"]
    g.add_argument("--log-level", dest="watch_log_level", default=None, choices=LOG_LEVELS,
                   help="logging detail on stderr (default: info)")
    g.add_argument("--config", help="TOML file with defaults for the convert options ([convert] table)")
    add_arguments(p, RayConfig, groups=groups)
    add_convert_options(p)

    j = add_command(sub, "jobs", _cmd_jobs, "list the queue and history of a watch folder's job journal",
                    "List the jobs of a 'facestyle watch' journal: running and queued first, then the most recent "
                    "finished ones, then the counts per state.", show_defaults=False)
    j.add_argument("outbox", nargs="?", help="the watch folder's OUTBOX (journal in OUTBOX/.facestyle)")
    j.add_argument("--state", help="the state folder, if the daemon was started with --state")
    j.add_argument("--status", action="append", choices=STATES, help="only jobs in this state (repeatable)")
    j.add_argument("-n", "--limit", type=int, default=50, help="at most this many finished jobs")
    j.add_argument("--json", action="store_true", help="print one JSON object")


__all__ = ["add_commands"]
