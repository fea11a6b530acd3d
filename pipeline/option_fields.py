"""Options as fields of the configuration dataclasses, and the one mapper from those fields to every
front end.

A field declared with :func:`option` carries its help, choices and command-line spelling next to
its name, type and default, so each option is written down once::

    @dataclass(frozen=True)
    class WatchConfig:
        settle: float = option(5.0, "take a file once its size and mtime have not changed for this long",
                               metavar="SECONDS")

From there :func:`add_arguments` makes the argparse arguments (``--settle SECONDS``, default 5.0),
:func:`from_mapping` checks a mapping with the Python names (a service request, the VapourSynth
filter's keyword arguments, a TOML table with ``-`` or ``_`` in the keys) and builds the instance
directly, :func:`from_namespace` builds it from parsed arguments and :func:`to_mapping` goes back
to a JSON-able mapping. Supported field types: ``bool`` (a switch, default False), ``int``,
``float``, ``str`` and ``Path``, each optionally ``| None``, and ``tuple[str, ...]`` (an option
that may be given several times: a repeated flag, a list or a single string in a mapping).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError

_KEY = "facestyle.option"
_TYPES = (bool, int, float, str, Path)


@dataclass(frozen=True)
class OptionSpec:
    """What a front end needs to know about one option besides its name, type and default.

    Attributes:
        help: one line (or a few) for ``--help`` and the documentation.
        choices: the allowed values, or None for any value of the type.
        metavar: the placeholder in ``--help`` (``N``, ``SECONDS``...).
        flags: the command-line spelling(s); default ``--`` + the name with ``-`` for ``_``.
        group: the ``--help`` section it is listed under (None: the parser's own list).
        job: False for options of the process rather than of one job (a job or filter may not set them).
    """

    help: str
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    flags: tuple[str, ...] = ()
    group: str | None = None
    job: bool = True


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - argparse's word
           default_factory: Any = dataclasses.MISSING, choices: Iterable[Any] | None = None,
           metavar: str | None = None, flags: tuple[str, ...] = (), group: str | None = None,
           job: bool = True) -> Any:
    """A dataclass field that is also a user option (see the module docstring)."""
    spec = OptionSpec(help, tuple(choices) if choices is not None else None, metavar, flags, group, job)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_KEY: spec})


@dataclass(frozen=True)
class Option:
    """One option of a configuration dataclass, as the front ends see it.

    Attributes:
        name: the Python name (``style_code``). kind: the base type (bool, int, float, str, Path).
        optional: None is a valid value. spec: help, choices and spelling.
        value: the field's default, or its default factory (called each time :attr:`default` is read).
    """

    name: str
    kind: type
    optional: bool
    value: Any
    spec: OptionSpec
    factory: bool = False
    multiple: bool = False

    @property
    def default(self) -> Any:
        return self.value() if self.factory else self.value

    @property
    def flags(self) -> tuple[str, ...]:
        return self.spec.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def flag(self) -> str:
        """The long spelling (``--style-code``)."""
        return self.flags[-1]

    def coerce(self, value: Any, where: str = "option") -> Any:
        """A value from a mapping (JSON, TOML, keyword arguments) -> the field's type, checked.

        Numbers may come as strings and strings as numbers (``"4"`` for an int, ``0.8`` for a
        string option), as on the command line; a switch takes only true or false.

        Raises:
            UsageError: a value of the wrong kind, or not one of the choices.
        """
        label = f"{where} {self.name!r}"
        if self.multiple:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
                raise UsageError(f"{label} needs a string or a list of strings, got {value!r}")
            return tuple(values)
        if value is None:
            if self.optional or self.kind is bool:
                return self.default if self.kind is bool else None
            raise UsageError(f"{label} needs a value")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{label} is a switch: give true or false")
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Path)):
            raise UsageError(f"{label} needs a number or a string, got {value!r}")
        try:
            if self.kind is int and isinstance(value, float):     # 4.0 from JSON is 4; 4.5 is not an int
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            out = self.kind(value)
        except (TypeError, ValueError):
            raise UsageError(f"{label}: invalid {self.kind.__name__} value: {value!r}") from None
        self.check(out, where)
        return out

    def check(self, value: Any, where: str = "option") -> None:
        """Raises UsageError when ``value`` is not one of the choices."""
        choices = self.spec.choices
        if choices is not None and value is not None and value not in choices:
            raise UsageError(f"{where} {self.name!r}: invalid choice: {value!r} "
                             f"(choose from {', '.join(repr(c) for c in choices)})")


def _base(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True)."""
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, Ellipsis):
        return str, False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and args[0] in _TYPES:
            return args[0], True
    elif hint in _TYPES:
        return hint, False
    raise TypeError(f"an option must be one of {[t.__name__ for t in _TYPES]} (or | None), not {hint!r}")


@functools.cache
def options_of(cls: type) -> tuple[Option, ...]:
    """The fields of ``cls`` declared with :func:`option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is None:
            continue
        kind, optional = _base(hints[f.name])
        factory = f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING
        value = f.default_factory if factory else (None if f.default is dataclasses.MISSING else f.default)
        if kind is bool and value is not False:
            raise TypeError(f"{cls.__name__}.{f.name}: a switch must default to False")
        multiple = typing.get_origin(hints[f.name]) is tuple
        out.append(Option(f.name, kind, optional, value, spec, factory, multiple))
    return tuple(out)


def option_map(*classes: type) -> dict[str, Option]:
    """Python name -> :class:`Option` over several dataclasses (a later class may not repeat a name)."""
    out: dict[str, Option] = {}
    for cls in classes:
        for opt in options_of(cls):
            if opt.name in out:
                raise TypeError(f"option {opt.name!r} is declared twice")
            out[opt.name] = opt
    return out


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
                  groups: dict[str, Any] | None = None) -> None:
    """Add the options of ``cls`` to ``parser`` (``--help`` sections by :attr:`OptionSpec.group`).

    ``groups`` maps section titles to argument groups already made (they are reused, new ones
    are added to it); ``skip`` leaves options out.
    """
    groups = {} if groups is None else groups
    skipped = set(skip)
    for opt in options_of(cls):
        if opt.name in skipped:
            continue
        target: Any = parser
        if opt.spec.group is not None:
            if opt.spec.group not in groups:
                groups[opt.spec.group] = parser.add_argument_group(opt.spec.group)
            target = groups[opt.spec.group]
        kw: dict[str, Any] = {"dest": opt.name, "help": opt.spec.help}
        if opt.kind is bool:
            kw["action"] = "store_true"
        elif opt.multiple:
            kw.update(action="append", type=str, default=None)
            if opt.spec.metavar is not None:
                kw["metavar"] = opt.spec.metavar
        else:
            kw.update(type=opt.kind, default=opt.default)
            if opt.spec.choices is not None:
                kw["choices"] = list(opt.spec.choices)
            if opt.spec.metavar is not None:
                kw["metavar"] = opt.spec.metavar
        target.add_argument(*opt.flags, **kw)


def normalise(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keys with ``-`` (TOML, the command-line spelling) -> Python names."""
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def coerce_mapping(values: Mapping[str, Any], known: Mapping[str, Option], where: str = "option") -> dict[str, Any]:
    """Check every name and value of ``values`` against ``known``; None values are left out.

    Raises:
        UsageError: an unknown name (the first one), or a bad value.
    """
    out = {}
    for name, value in normalise(values).items():
        opt = known.get(name)
        if opt is None:
            raise UsageError(f"unknown {where} {name!r}")
        if value is not None:
            out[name] = opt.coerce(value, where)
    return out


def from_mapping(cls: type, values: Mapping[str, Any], where: str = "option", **fixed: Any) -> Any:
    """An instance of ``cls`` from the Python names of its options (the others at their defaults).

    ``fixed`` are further constructor arguments (fields that are not options). Raises
    :class:`UsageError` for unknown names and bad values (the dataclass then checks the rest).
    """
    return cls(**coerce_mapping(values, {o.name: o for o in options_of(cls)}, where), **fixed)


def from_namespace(cls: type, ns: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of ``cls`` from parsed arguments (options the parser lacks keep their defaults)."""
    def value(o: Option) -> Any:
        v = getattr(ns, o.name)
        return (o.default if v is None else tuple(v)) if o.multiple else v

    return cls(**{o.name: value(o) for o in options_of(cls) if hasattr(ns, o.name)}, **fixed)


def to_mapping(obj: Any, changed_only: bool = False, job_only: bool = False) -> dict[str, Any]:
    """The options of a dataclass instance by Python name (Paths as strings): all of them, or only
    those that differ from the default, or only the job options."""
    out = {}
    for opt in options_of(type(obj)):
        value = getattr(obj, opt.name)
        if (changed_only and value == opt.default) or (job_only and not opt.spec.job):
            continue
        out[opt.name] = str(value) if isinstance(value, Path) else list(value) if opt.multiple else value
    return out


def check_choices(obj: Any) -> None:
    """For ``__post_init__``: every option value is one of its choices (UsageError if not)."""
    for opt in options_of(type(obj)):
        opt.check(getattr(obj, opt.name))
