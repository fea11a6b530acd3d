"""The command-line side of the measuring tools: ``facestyle bench`` and ``facestyle metrics``
(parsers and handlers; ``cli.py`` adds them)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.options import ConvertOptions, add_convert_options


def _cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from pipeline.frontend import FrontEnd
    from pipeline.model.checkpoint import build_model
    from pipeline.model.random_checkpoint import make_random_checkpoint
    from pipeline.tools.bench import run_bench

    front = FrontEnd.open(ConvertOptions.from_args(args))
    if front.options.model:
        model = front.load_model()
    else:                              # the official size, random weights: the same compute as a real model
        model = build_model(make_random_checkpoint(args.random_preset, 0), device=front.device,
                            dtype=front.precision.params)
    if args.input is not None and not Path(args.input).is_file():
        raise UsageError(f"{args.input}: not a file")
    detector = front.make_detector() if args.input else None
    w, _, h = args.size.partition("x")
    with tempfile.TemporaryDirectory(prefix="facestyle-bench-") as tmp:
        report = run_bench(Path(args.input) if args.input else None, model, detector, front.config,
                           frames=args.frames, synthetic_size=(int(w), int(h)), workdir=Path(tmp))
    print(json.dumps(report.as_dict()) if args.json else report.as_table())
    return 0


def _cmd_metrics_flicker(args: argparse.Namespace) -> int:
    from pipeline.tools.metrics import flicker

    report = flicker(args.input, args.output, max_frames=args.max_frames, flow_size=args.flow_size)
    print(json.dumps(report.as_dict()) if args.json else report.as_table())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``metrics`` to the ``facestyle`` parser."""
    from pipeline.frontend import add_command
    from pipeline.model.random_checkpoint import PRESETS
    from pipeline.tools.bench import FRAMES, SYNTHETIC_SIZE
    from pipeline.tools.metrics import FLOW_SIZE

    p = add_command(
        sub, "bench", _cmd_bench, "time the real pipeline per stage, against this machine's measured peak",
        "Run the real pipeline on INPUT (or on a synthetic clip with a fixed synthetic face) and print per stage "
        "(decode, detect, invert, smooth, generate, paste, encode) frames/s and share of wall time, the achieved "
        "GFLOP/s of invert and generate next to the peak of a matmul and a 512-channel 3x3 conv probe, and the "
        "overlap efficiency (slowest stage alone / wall time). Without --model it uses random weights of the "
        "official size.")
    p.add_argument("input", nargs="?", help="a clip with a face (default: synthetic)")
    p.add_argument("--random-preset", default="toonify", choices=list(PRESETS),
                   help="architecture of the random model when no --model is given")
    p.add_argument("--frames", type=int, default=FRAMES, help="frames to run")
    p.add_argument("--size", default="x".join(map(str, SYNTHETIC_SIZE)), help="synthetic clip size WxH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_convert_options(p)

    m = sub.add_parser("metrics", help="measure a conversion (temporal consistency)")
    m_sub = m.add_subparsers(dest="metrics_command", metavar="METRIC")
    f = add_command(
        m_sub, "flicker", _cmd_metrics_flicker, "warping error and responsiveness of OUTPUT against the motion of "
                                                "INPUT",
        "Temporal consistency of a stylized clip: the warping error of OUTPUT under optical flow computed on INPUT "
        "(mean absolute difference, 0-255 levels, inside the face region; the input's own value is the floor), and "
        "responsiveness (how much of the input's motion the output follows: 1 = all, 0 = frozen). Both clips must "
        "have the same frames.")
    f.add_argument("input", help="the source clip")
    f.add_argument("output", help="the stylized clip (full output mode)")
    f.add_argument("--max-frames", type=int, default=None, help="compare only the first N frames")
    f.add_argument("--flow-size", type=int, default=FLOW_SIZE, help="long side of the frames the flow is computed on")
    f.add_argument("--json", action="store_true", help="print one JSON object")

    from pipeline.tools.preview import add_command as add_preview

    add_preview(sub)


__all__ = ["add_commands"]
