"""The one mapper from option fields to argparse, checked mappings and back."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.option_fields import (
    add_arguments,
    check_choices,
    coerce_mapping,
    from_mapping,
    from_namespace,
    option,
    option_map,
    options_of,
    to_mapping,
)

_made: list[int] = []


def _folder() -> Path:
    _made.append(1)
    return Path("/srv") / str(len(_made))


@dataclass(frozen=True)
class Sample:
    name: str                                          # not an option: a constructor argument
    count: int = option(3, "how many", metavar="N", group="basics")
    ratio: float | None = option(None, "a fraction", group="basics")
    mode: str = option("fast", "speed", choices=("fast", "slow"))
    verbose: bool = option(False, "say more", flags=("-v", "--verbose"))
    folder: Path = option(default_factory=_folder, help="where")
    secret: int = option(0, "process-wide", job=False)

    def __post_init__(self) -> None:
        check_choices(self)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p, Sample)
    return p


def test_fields_become_arguments_with_their_defaults_choices_and_spelling():
    args = _parser().parse_args([])
    assert (args.count, args.ratio, args.mode, args.verbose, args.secret) == (3, None, "fast", False, 0)
    args = _parser().parse_args(["--count", "7", "--ratio", "0.25", "--mode", "slow", "-v", "--folder", "/x"])
    assert (args.count, args.ratio, args.mode, args.verbose, args.folder) == (7, 0.25, "slow", True, Path("/x"))
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        _parser().parse_args(["--mode", "medium"])
    groups = {g.title: [a.dest for a in g._group_actions] for g in _parser()._action_groups}
    assert groups["basics"] == ["count", "ratio"]
    assert "N" in _parser().format_help() and "how many" in _parser().format_help()


def test_a_mapping_and_the_command_line_give_the_same_instance():
    argv = ["--count", "7", "--ratio", "0.25", "--mode", "slow", "--verbose", "--folder", "/x"]
    from_args = from_namespace(Sample, _parser().parse_args(argv), name="a")
    from_dict = from_mapping(Sample, {"count": 7, "ratio": 0.25, "mode": "slow", "verbose": True, "folder": "/x"},
                             name="a")
    from_toml_keys = from_mapping(Sample, {"count": "7", "ratio": "0.25", "mode": "slow", "verbose": True,
                                           "folder": "/x"}, name="a")
    assert from_args == from_dict == from_toml_keys
    assert from_dict.count == 7 and isinstance(from_dict.folder, Path)
    assert to_mapping(from_dict, changed_only=True, job_only=True) == {
        "count": 7, "ratio": 0.25, "mode": "slow", "verbose": True, "folder": "/x"}


@pytest.mark.parametrize(("values", "message"), [
    ({"count": "many"}, "invalid int value: 'many'"),
    ({"count": 2.5}, "invalid int value: 2.5"),
    ({"count": True}, "needs a number or a string"),
    ({"count": [1]}, "needs a number or a string"),
    ({"verbose": "yes"}, "is a switch"),
    ({"mode": "medium"}, "invalid choice: 'medium'"),
    ({"colour": "red"}, "unknown option 'colour'"),
])
def test_bad_values_are_one_usage_error(values, message):
    with pytest.raises(UsageError, match=message):
        from_mapping(Sample, values, name="a")


def test_none_and_false_keep_defaults_and_integral_floats_are_ints():
    s = from_mapping(Sample, {"count": None, "verbose": False, "ratio": None}, name="a")
    assert (s.count, s.verbose, s.ratio) == (3, False, None)
    assert from_mapping(Sample, {"count": 4.0}, name="a").count == 4
    assert from_mapping(Sample, {"mode": "slow"}, name="a").mode == "slow"


def test_constructing_directly_checks_choices():
    with pytest.raises(UsageError, match="invalid choice"):
        Sample("a", mode="medium")


def test_default_factories_are_called_when_read_not_once():
    opt = {o.name: o for o in options_of(Sample)}["folder"]
    first, second = opt.default, opt.default
    assert first != second                           # the factory ran twice (an environment may change between)


def test_coerce_mapping_takes_command_line_spelling_and_reports_the_first_unknown_name():
    known = option_map(Sample)
    assert coerce_mapping({"count": "5", "ratio": None}, known) == {"count": 5}
    with pytest.raises(UsageError, match="unknown setting 'colour'"):
        coerce_mapping({"colour": 1}, known, where="setting")


def test_a_name_declared_twice_and_unsupported_types_are_programming_errors():
    with pytest.raises(TypeError, match="declared twice"):
        option_map(Sample, Sample)

    @dataclass(frozen=True)
    class Bad:
        items: list = option(default_factory=list, help="no lists")

    with pytest.raises(TypeError, match="an option must be"):
        options_of(Bad)

    @dataclass(frozen=True)
    class OnSwitch:
        on: bool = option(True, "a switch that is on cannot be turned off")

    with pytest.raises(TypeError, match="default to False"):
        options_of(OnSwitch)
