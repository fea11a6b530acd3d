"""The command-line side of the job service: ``facestyle serve``, ``facestyle submit`` and
``facestyle cancel`` (parsers and handlers; ``cli.py`` adds them)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from pipeline.cluster.config import RayConfig
from pipeline.errors import UsageError
from pipeline.frontend import ReportOptions, add_command
from pipeline.option_fields import add_arguments, from_namespace
from pipeline.options import ConvertOptions, add_convert_options
from pipeline.service.config import DEFAULT_PORT, ServeConfig


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from pipeline.service.server import serve

    logging.getLogger("pipeline").setLevel(logging.INFO if args.log_level == "warning" else
                                           getattr(logging, args.log_level.upper()))
    try:
        given = {"roots": tuple(Path(r).expanduser() for r in args.root or ()), "devices": tuple(args.device or ())}
        cfg = from_namespace(ServeConfig, args, ray=from_namespace(RayConfig, args),
                             **{k: v for k, v in given.items() if v})
        cfg = replace(cfg, state=cfg.state.expanduser(),
                      token_file=cfg.token_file.expanduser() if cfg.token_file else None)
    except ValueError as e:
        raise UsageError(str(e)) from e
    for root in cfg.roots:
        if not root.is_dir():
            raise UsageError(f"--root {root}: not a folder")
    if cfg.ray.address is not None:
        from pipeline.cluster.actors import import_ray

        import_ray()                                 # Ray missing: one line now, before the state folder is made
    return serve(cfg)


def _client(args: argparse.Namespace):  # noqa: ANN202 - pipeline.service.client.Client
    from pipeline.service.client import Client

    return Client(args.server, args.token, args.token_file)


def _cmd_submit(args: argparse.Namespace) -> int:
    opts = ConvertOptions.from_args(args)
    model = opts.require_model()
    options = opts.as_dict(changed_only=True)        # send only what differs: the service fills in the same defaults
    options.pop("model", None)
    report = from_namespace(ReportOptions, args)
    client = _client(args)
    job = client.submit(args.input, model, args.output, **options)
    if not args.wait:
        print(json.dumps(job) if report.progress == "json" else f"job {job['id']} queued: {job['input']} -> "
                                                                 f"{job['output']}")
        return 0
    return _follow(client, job, "none" if report.quiet else report.progress)


def _follow(client, job: dict, mode: str) -> int:  # noqa: ANN001 - pipeline.service.client.Client
    """Wait for a job, reporting as ``facestyle convert --progress`` does; exit 0 when it is done."""
    from pipeline.progress import make_progress
    from pipeline.service.client import JobFailed

    progress = make_progress(mode)
    name = Path(job["input"]).name
    seen = {"started": False, "frame": 0}

    def on_change(j: dict) -> None:
        live = j.get("progress")
        if live and not seen["started"]:
            seen["started"] = True
            progress.start(name, live["total"] if live else None)
        if live and live["frame"] > seen["frame"]:
            progress.update(live["frame"] - seen["frame"])
            seen["frame"] = live["frame"]

    try:
        final = client.wait(job["id"], progress=on_change)
    except JobFailed as e:
        progress.finish(ok=False, error=e.job.get("error"), job=e.job["id"], state=e.job["state"])
        raise
    if not seen["started"]:
        progress.start(name, final["result"].get("frames_out"))
    progress.finish(**{k: v for k, v in final["result"].items() if k != "src"}, job=final["id"])
    if mode == "bar":
        print(f"wrote {final['output']} (job {final['id']})")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    job = _client(args).cancel(args.job)
    print(f"job {job['id']}: {job['state']}")
    return 0


def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("service")
    g.add_argument("--server", help="service URL (default: $FACESTYLE_SERVER, the local service's address, "
                                    f"or http://127.0.0.1:{DEFAULT_PORT})")
    g.add_argument("--token", help="bearer token (default: $FACESTYLE_TOKEN or the local service's token file)")
    g.add_argument("--token-file", help="read the token from this file")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``submit`` and ``cancel`` to the ``facestyle`` parser."""
    p = add_command(
        sub, "serve", _cmd_serve, "run the local job service for editors and scripts (HTTP/JSON API)",
        "Run a local HTTP/JSON job service: editors and scripts submit conversions, follow their progress "
        "(server-sent events) and cancel them. Jobs run one at a time per device with the models loaded once; the "
        "queue survives a restart. With --ray ADDRESS every job runs on a Ray cluster instead (one at a time, spread "
        "over all its workers). A bearer token is created in the state folder on first start. See README, 'Use "
        "it from your editor'.")
    add_arguments(p, ServeConfig)
    p.add_argument("--root", action="append", metavar="DIR",
                   help="folder jobs may read and write (repeatable; default: your home folder)")
    p.add_argument("--device", action="append", help="device to run jobs on (repeatable: one worker each; "
                                                      "default auto; with --ray only previews run here)")
    add_arguments(p, RayConfig)

    s = add_command(
        sub, "submit", _cmd_submit, "queue a conversion on a running 'facestyle serve' (optionally wait for it)",
        "Queue INPUT on the job service with the same options as 'facestyle convert'. With --wait, follow it and "
        "report progress like convert does (--progress json prints the same lines).")
    s.add_argument("input", help="video or photo (a path the service can read)")
    s.add_argument("-o", "--output", help="output file (default: <input>_<model>.mp4 beside the input)")
    add_convert_options(s)
    s.add_argument("--wait", action="store_true", help="wait for the job to end; exit 1 if it fails")
    add_arguments(s, ReportOptions)
    s.add_argument("--config", help="TOML file with defaults for the convert options ([convert] table)")
    _add_connection(s)

    c = add_command(sub, "cancel", _cmd_cancel, "cancel a queued or running job of the job service",
                    show_defaults=False)
    c.add_argument("job", type=int, help="job id")
    _add_connection(c)


__all__ = ["add_commands"]
