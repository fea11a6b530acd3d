"""The front-end layer: what every route opens before it converts anything.

The CLI commands (``convert``, ``watch``, ``bench``), the watch daemon, the job service, the
VapourSynth filter (and a cluster runner) all start from :class:`~pipeline.options.ConvertOptions`
and go through :class:`FrontEnd`::

    front = FrontEnd.open(options)                 # device, precision, threads, ConvertConfig
    model = front.load_model()                     # by name or path, downloaded if needed, checked
    detector = front.make_detector()
    convert_file(src, dst, model, detector, front.config)

and, for the command line and the daemon, read the same TOML config file (:func:`read_config`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.errors import UsageError
from pipeline.face.detect import Detector, make_detector
from pipeline.model import StyleGANEX, load_model
from pipeline.option_fields import check_choices, coerce_mapping, option, option_map
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision, resolve_device, resolve_precision

if TYPE_CHECKING:
    from pipeline.convert import ConvertResult

log = logging.getLogger(__name__)

CONFIG_ENV = "FACESTYLE_CONFIG"
CONFIG_TABLE = "convert"
PROGRESS_MODES = ("bar", "json", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ReportOptions:
    """How a command that runs conversions reports (``convert``, ``submit --wait``)."""

    quiet: bool = option(False, "no progress bar or summary", flags=("-q", "--quiet"), group="reporting")
    progress: str = option("bar", "json: one JSON object per line on stdout, for programs that drive us",
                           choices=PROGRESS_MODES, group="reporting")

    def __post_init__(self) -> None:
        check_choices(self)

    @property
    def mode(self) -> str:
        """The :func:`pipeline.progress.make_progress` mode: ``json``, ``bar`` or ``none`` (quiet)."""
        if self.progress == "json":
            return "json"
        return "none" if self.quiet or self.progress == "none" else "bar"


def report_folder(results: Sequence[ConvertResult], report: ReportOptions) -> int:
    """Print a folder's outcome (a JSON summary event, or a line per file and a count) and return the
    exit code: 0 when every file converted, 1 when any failed."""
    failed = [r for r in results if not r.ok]
    if report.progress == "json":
        print(json.dumps({"event": "summary", "converted": len(results) - len(failed), "failed": len(failed),
                          "results": [r.as_dict() for r in results]}))
    elif not report.quiet:
        for r in results:
            print(f"{'ok    ' if r.ok else 'FAILED'} {r.src.name}" + (f": {r.error}" if r.error else f" -> {r.dst}"))
        print(f"{len(results) - len(failed)} converted, {len(failed)} failed")
    return 1 if failed else 0


def add_command(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], help: str,  # noqa: A002
                description: str | None = None, show_defaults: bool = True) -> argparse.ArgumentParser:
    """A ``facestyle`` command: its parser (``--help`` shows the defaults unless told not to), running
    ``func(args)`` -> exit code."""
    kw = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter} if show_defaults else {}
    p = sub.add_parser(name, help=help, description=description, **kw)
    p.set_defaults(func=func)
    return p


def model_tag(model: str) -> str:
    """The model's tag in output names: ``pixar`` for a name, the file's stem for a path."""
    return Path(model).stem if Path(model).suffix else model


def check_model(model: StyleGANEX, name: str) -> StyleGANEX:
    """Refuse models that do not take video frames (sketch2face, mask2face). Raises UsageError."""
    if model.arch.input_nc != 3:
        raise UsageError(f"{name} translates {model.arch.input_nc}-channel sketches/masks, not video frames; "
                         "use it from the Python API")
    return model


def open_model(name: str, device: torch.device, precision: Precision, *, progress: bool = False) -> StyleGANEX:
    """A model by official name or checkpoint path, downloaded when needed, on ``device``, checked
    to take video frames.

    Raises:
        CheckpointError, ModelNotAvailableError: see :func:`pipeline.model.registry.resolve_model`.
        UsageError: a sketch or mask model.
    """
    from pipeline.model.registry import resolve_model

    return check_model(load_model(resolve_model(name, progress=progress), device=device, dtype=precision.params),
                       name)


@dataclass(frozen=True)
class FrontEnd:
    """What a route has opened from its options: the resolved device and precision and the
    pipeline's configuration for them.

    Attributes:
        options: as given. device: resolved (``auto`` -> CUDA when present).
        precision: resolved for the device. config: ``options.to_config(device, precision)``.
    """

    options: ConvertOptions
    device: torch.device
    precision: Precision
    config: Any   # pipeline.convert.ConvertConfig

    @classmethod
    def open(cls, options: ConvertOptions, device: torch.device | str | None = None) -> FrontEnd:
        """Resolve device and precision, apply ``threads`` (process-wide), map the options.

        Args:
            options: the convert options.
            device: run here instead of ``options.device`` (a service worker's device, a loaded model's).

        Raises:
            UsageError: an unknown or missing device, fp16 on a CPU, bad option values or combinations.
        """
        resolved = resolve_device(options.device) if device is None else torch.device(device)
        precision = resolve_precision(options.precision, resolved)
        if options.threads:
            torch.set_num_threads(options.threads)
        return cls(options, resolved, precision, options.to_config(resolved, precision))

    @property
    def tag(self) -> str:
        """The model's tag in output names (see :func:`model_tag`)."""
        return model_tag(self.options.require_model())

    def load_model(self, *, progress: bool = False) -> StyleGANEX:
        """The model of the options on this device (see :func:`open_model`); UsageError without one."""
        return open_model(self.options.require_model(), self.device, self.precision, progress=progress)

    def make_detector(self) -> Detector:
        """A new face detector of the options (one per thread: detectors are not shared)."""
        return make_detector(self.options.detector, max_side=self.options.detect_max_side)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The TOML config file: ``explicit``, else ``$FACESTYLE_CONFIG``, else
    ``~/.config/facestyle/config.toml`` when it exists, else None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path.home() / ".config" / "facestyle" / "config.toml"
    return default if default.is_file() else None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``[convert]`` table of a TOML config file, checked: names (``batch-size`` or
    ``batch_size``) of the convert and reporting options -> values of their types.

    Raises:
        UsageError: the file cannot be read or parsed, unknown names, bad values.
    """
    try:
        import tomllib
    except ModuleNotFoundError:                      # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh).get(CONFIG_TABLE, {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read config file {path}: {e}") from e
    known = option_map(ConvertOptions, ReportOptions)
    unknown = sorted(k for k in (str(k).replace("-", "_") for k in table) if k not in known)
    if unknown:
        raise UsageError(f"config file {path}: unknown option(s) {', '.join(unknown)}")
    return coerce_mapping(table, known, where=f"config file {path}: option")
