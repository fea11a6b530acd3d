"""The command-line side of the job service: ``facestyle serve``, ``facestyle submit`` and
``facestyle cancel`` (parsers and handlers; ``cli.py`` adds them)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.options import add_convert_options, option_names
from pipeline.service.config import DEFAULT_PORT, ServeConfig, default_state_dir


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from pipeline.service.server import serve

    logging.getLogger("pipeline").setLevel(logging.INFO if args.log_level == "warning" else
                                           getattr(logging, args.log_level.upper()))
    try:
        cfg = ServeConfig(host=args.host, port=args.port, state=Path(args.state).expanduser(),
                          roots=tuple(Path(r).expanduser() for r in (args.root or [Path.home()])),
                          token_file=Path(args.token_file).expanduser() if args.token_file else None,
                          allow_remote=args.allow_remote, devices=tuple(args.device or ["auto"]),
                          threads=args.threads, max_models=args.max_models)
    except ValueError as e:
        raise UsageError(str(e)) from e
    for root in cfg.roots:
        if not root.is_dir():
            raise UsageError(f"--root {root}: not a folder")
    return serve(cfg)


def _client(args: argparse.Namespace):  # noqa: ANN202 - pipeline.service.client.Client
    from pipeline.service.client import Client

    return Client(args.server, args.token, args.token_file)


def _cmd_submit(args: argparse.Namespace) -> int:
    if args.model is None:
        raise UsageError("no model given: use --model NAME|PATH (see 'facestyle models')")
    defaults = _option_defaults()           # send only what differs: the service fills in the same defaults
    options = {k: getattr(args, k) for k in option_names() if getattr(args, k) != defaults[k]}
    client = _client(args)
    job = client.submit(args.input, args.model, args.output, **options)
    json_out = args.progress == "json"
    if not args.wait:
        print(json.dumps(job) if json_out else f"job {job['id']} queued: {job['input']} -> {job['output']}")
        return 0
    return _follow(client, job, args.progress if not args.quiet else "none")


def _option_defaults() -> dict:
    probe = argparse.ArgumentParser(add_help=False)
    add_convert_options(probe)
    return {a.dest: a.default for a in probe._actions}


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
    p = sub.add_parser(
        "serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="run the local job service for editors and scripts (HTTP/JSON API)",
        description="Run a local HTTP/JSON job service: editors and scripts submit conversions, follow their "
                    "progress (server-sent events) and cancel them. Jobs run one at a time per device with the "
                    "models loaded once; the queue survives a restart. A bearer token is created in the state "
                    "folder on first start. See README, 'Use it from your editor'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only unless --allow-remote)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one, written to server.json)")
    p.add_argument("--state", default=str(default_state_dir()),
                   help="folder for the job journal, the token, the lock and server.json")
    p.add_argument("--root", action="append", metavar="DIR",
                   help="folder jobs may read and write (repeatable; default: your home folder)")
    p.add_argument("--token-file", help="use this token file instead of STATE/token")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (needs --token-file; put TLS in front of it)")
    p.add_argument("--device", action="append", help="device to run jobs on (repeatable: one worker each; "
                                                      "default auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for inference (0: PyTorch default)")
    p.add_argument("--max-models", type=int, default=2, help="models kept loaded per device")
    p.set_defaults(func=_cmd_serve)

    s = sub.add_parser(
        "submit", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="queue a conversion on a running 'facestyle serve' (optionally wait for it)",
        description="Queue INPUT on the job service with the same options as 'facestyle convert'. With --wait, "
                    "follow it and report progress like convert does (--progress json prints the same lines).")
    s.add_argument("input", help="video or photo (a path the service can read)")
    s.add_argument("-o", "--output", help="output file (default: <input>_<model>.mp4 beside the input)")
    add_convert_options(s)
    s.add_argument("--wait", action="store_true", help="wait for the job to end; exit 1 if it fails")
    s.add_argument("--progress", default="bar", choices=["bar", "json", "none"], help="with --wait: how to report")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    s.add_argument("--config", help="TOML file with defaults for the convert options ([convert] table)")
    _add_connection(s)
    s.set_defaults(func=_cmd_submit)

    c = sub.add_parser("cancel", help="cancel a queued or running job of the job service")
    c.add_argument("job", type=int, help="job id")
    _add_connection(c)
    c.set_defaults(func=_cmd_cancel)


__all__ = ["add_commands"]
