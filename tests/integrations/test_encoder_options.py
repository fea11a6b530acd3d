"""--encoder and the hardware --codec reach every front end: the command line (convert, watch,
submit), the service / VapourSynth / TOML mapping, and the Blender add-on's command."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from pipeline.options import ConvertOptions, parse_options
from pipeline.runtime.device import Precision

ADDON = Path(__file__).resolve().parents[2] / "integrations" / "blender" / "facestyle_vse"


def _commands():
    spec = importlib.util.spec_from_file_location("_facestyle_vse_commands_encoders", ADDON / "commands.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mapping_and_toml_carry_the_encoder():
    for opts in (parse_options({"encoder": "ffmpeg", "codec": "ffv1"}),
                 ConvertOptions.from_mapping(tomllib.loads('encoder = "ffmpeg"\ncodec = "ffv1"\n'))):
        assert opts.as_dict(changed_only=True) == {"encoder": "ffmpeg", "codec": "ffv1"}
        if not shutil.which("ffmpeg"):
            pytest.skip("no ffmpeg on PATH")
        assert opts.to_config(torch.device("cpu"), Precision()).video_out.encoder == "ffmpeg"


@pytest.mark.parametrize("command", ["convert", "watch", "submit"])
def test_commands_take_the_options(command):
    import cli

    parser = cli.build_parser()
    positional = {"convert": ["in.mp4"], "watch": ["inbox", "--out", "outbox"], "submit": ["in.mp4"]}[command]
    args = parser.parse_args([command, *positional, "--encoder", "ffmpeg", "--codec", "hevc_vaapi"])
    assert (args.encoder, args.codec) == ("ffmpeg", "hevc_vaapi")


def test_blender_command_passes_extra_encoder_options():
    commands = _commands()
    options = commands.ConvertOptions("pixar", codec="h264_nvenc", extra=("--encoder", "ffmpeg", "--codec",
                                                                          "hevc_vaapi"))
    cmd = commands.build_command("facestyle", Path("/clips/a.mov"), Path("/out/a_pixar.mp4"), options)
    assert cmd[cmd.index("--encoder") + 1] == "ffmpeg" and cmd[-4:-2] == ["--codec", "hevc_vaapi"]
    assert commands.effective_codec(options.codec, options.extra) == "hevc_vaapi"
    assert commands.SUFFIXES["hevc_vaapi"] == commands.SUFFIXES["h264_nvenc"] == ".mp4"
