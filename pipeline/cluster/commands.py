"""``--ray`` on the command line: ``facestyle convert INPUT... --ray ADDRESS`` turned into
``(source, output)`` pairs for :func:`pipeline.cluster.convert_on_ray`, and its report printed as a
plain ``convert`` prints it (one line per file, or JSON events with ``--progress json``)."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cluster.config import RayConfig
from pipeline.cluster.driver import convert_on_ray
from pipeline.convert import default_output, list_inputs
from pipeline.errors import InputError, UsageError
from pipeline.frontend import ReportOptions, model_tag, report_folder
from pipeline.options import ConvertOptions


def ray_pairs(inputs: Sequence[str], output: str | None, tag: str) -> list[tuple[Path, Path]]:
    """Sources and outputs: a file goes to ``-o`` (one input) or ``<stem>_<tag>.mp4`` beside it (or in
    the ``-o`` folder, several inputs); a folder's files go to ``-o`` or ``<folder>_<tag>``.

    Raises:
        InputError: a missing input or an empty folder. UsageError: two inputs writing one output.
    """
    pairs: list[tuple[Path, Path]] = []
    single = len(inputs) == 1
    for text in inputs:
        src = Path(text)
        if not src.exists():
            raise InputError(f"{src}: file not found")
        if src.is_dir():
            folder = Path(output) if output and single else (Path(output) / src.name if output
                                                            else src.with_name(f"{src.name}_{tag}"))
            files = list_inputs(src)
            if not files:
                raise InputError(f"{src}: no videos or photos in this folder")
            folder.mkdir(parents=True, exist_ok=True)
            pairs += [(f, default_output(f, tag, folder)) for f in files]
        elif output and single:
            pairs.append((src, Path(output)))
        else:
            pairs.append((src, default_output(src, tag, Path(output) if output else None)))
    outputs = [dst.resolve() for _, dst in pairs]
    if len(set(outputs)) != len(outputs):
        raise UsageError("two inputs would write the same output; give -o a folder or rename them")
    return pairs


def convert_command(inputs: Sequence[str], output: str | None, options: ConvertOptions, rcfg: RayConfig,
                    report: ReportOptions) -> int:
    """Run ``convert`` on Ray; returns the exit code (a single file's error is raised as in ``convert``)."""
    from pipeline.progress import make_progress

    pairs = ray_pairs(inputs, output, model_tag(options.require_model()))
    progress = make_progress(report.mode)
    name = Path(inputs[0]).name if len(inputs) == 1 else f"{len(pairs)} files"
    results = convert_on_ray(pairs, options, rcfg, progress, name=name)
    if len(results) == 1 and not Path(inputs[0]).is_dir():
        result = results[0]
        if result.exception is not None:
            raise result.exception
        if result.damage:
            print(f"facestyle: warning: damaged input, converted what could be decoded: {result.damage}",
                  file=sys.stderr)
        if report.mode == "bar":
            c = result.chunks
            print(f"wrote {result.dst} ({result.frames_out} frames, {result.frames_with_face} with a face, "
                  f"{c['total']} chunks: {c['rendered']} rendered, {c['reused']} reused)")
        return 0
    return report_folder(results, report)
