"""The Blender add-on runs in Blender's own Python and cannot import facestyle, so it keeps its own
copies of a few tables. These tests hold them to the pipeline's (no Blender needed)."""
from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import fields
from pathlib import Path

from pipeline.media.codecs import CODECS, DEFAULT_CODEC
from pipeline.stages.invert import STYLE_CODES

ADDON = Path(__file__).resolve().parents[2] / "integrations" / "blender" / "facestyle_vse"


def _commands():
    spec = importlib.util.spec_from_file_location("_facestyle_vse_commands_tables", ADDON / "commands.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                    # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _ui_list(name: str) -> list[tuple[str, str, str]]:
    """A module-level list of (value, label, description) tuples in ui.py, read without importing bpy."""
    tree = ast.parse((ADDON / "ui.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"ui.py has no {name}")


def test_output_suffixes_are_the_codec_tables():
    suffixes = _commands().SUFFIXES
    assert set(suffixes) <= set(CODECS)
    for codec, suffix in suffixes.items():
        assert suffix == CODECS[codec].suffix, codec


def test_menu_codecs_exist_with_the_same_labels():
    for value, label, _ in _ui_list("CODECS"):
        assert value in CODECS and label == CODECS[value].label, value
        assert value in _commands().SUFFIXES


def test_menu_style_codes_are_the_pipelines():
    assert [v for v, _, _ in _ui_list("STYLE_CODES")] == list(STYLE_CODES)


def test_operator_defaults_are_the_pipelines():
    from pipeline.options import ConvertOptions

    defaults = {f.name: f.default for f in fields(_commands().ConvertOptions)}
    pipeline_defaults = {f.name: f.default for f in fields(ConvertOptions)}
    assert defaults["codec"] == DEFAULT_CODEC == pipeline_defaults["codec"]
    assert defaults["style_code"] == pipeline_defaults["style_code"]
    assert float(defaults["strength"]) == float(pipeline_defaults["strength"])
