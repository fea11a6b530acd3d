"""The convert options: one source for every route, defaults and choices read from the stages."""
from __future__ import annotations

import argparse

import pytest
import tomllib
import torch

from pipeline.convert import NO_FACE, ConvertConfig
from pipeline.errors import UsageError
from pipeline.media.codecs import CODECS
from pipeline.media.encoders import ENCODER_ROUTES
from pipeline.options import ConvertOptions, add_convert_options, convert_config, option_names, parse_options
from pipeline.runtime.device import PRECISIONS, Precision
from pipeline.stages.detect_crop import FACE_MODES, FaceConfig
from pipeline.stages.generate import GenerateConfig
from pipeline.stages.invert import STYLE_CODES
from pipeline.stages.keycodes import default_code_every
from pipeline.stages.paste import MODES, PasteConfig
from pipeline.stages.smooth import FILTERS, SmoothConfig
from pipeline.stages.video_in import VideoInConfig
from pipeline.stages.video_out import VideoOutConfig

CPU = torch.device("cpu")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_convert_options(p)
    return p


def test_the_defaults_are_the_stages_defaults():
    cfg = ConvertOptions().to_config(CPU, Precision())
    assert cfg.video_in == VideoInConfig() and cfg.face == FaceConfig() and cfg.smooth == SmoothConfig()
    assert cfg.paste == PasteConfig() and cfg.video_out == VideoOutConfig()
    assert (cfg.no_face, cfg.drop_lost) == (ConvertConfig().no_face, ConvertConfig().drop_lost)
    assert cfg.invert.style_code == ConvertConfig().invert.style_code
    assert ConvertConfig().invert.code_every == 1                    # the stage's own default: every frame
    assert cfg.invert.code_every == default_code_every(CPU) > 1         # the option's: chosen per device
    assert default_code_every(torch.device("cuda")) == 1
    assert (cfg.generate.strength, cfg.generate.keyframes) == (GenerateConfig().strength, ())


def test_the_choices_are_the_stages_tables():
    choices = {a.dest: a.choices for a in _parser()._actions if a.choices}
    assert choices == {"precision": list(PRECISIONS), "style_code": list(STYLE_CODES), "smooth_filter": list(FILTERS),
                       "face": list(FACE_MODES), "no_face": list(NO_FACE), "output_mode": list(MODES),
                       "codec": list(CODECS), "encoder": list(ENCODER_ROUTES)}


NON_DEFAULT_ARGV = ["--model", "m.pt", "--precision", "bf16", "--batch-size", "3", "--strength", "0:0,2:1",
                    "--style-code", "per-frame", "--code-every", "2", "--smooth-filter", "ema", "--smooth-strength",
                    "1,0.5,0", "--smooth-window", "4", "--face", "all", "--detect-every", "3", "--no-face", "pass",
                    "--drop-lost", "--feather", "0.1", "--codec", "ffv1", "--no-audio", "--start", "1.5",
                    "--end", "4", "--overwrite"]
NON_DEFAULT = {"model": "m.pt", "precision": "bf16", "batch_size": 3, "strength": "0:0,2:1", "style_code": "per-frame",
               "code_every": 2, "smooth_filter": "ema", "smooth_strength": "1,0.5,0", "smooth_window": 4,
               "face": "all", "detect_every": 3, "no_face": "pass", "drop_lost": True, "feather": 0.1,
               "codec": "ffv1", "no_audio": True, "start": 1.5, "end": 4.0, "overwrite": True}
NON_DEFAULT_TOML = """
model = "m.pt"
precision = "bf16"
batch-size = 3
strength = "0:0,2:1"
style-code = "per-frame"
code_every = 2
smooth-filter = "ema"
smooth-strength = "1,0.5,0"
smooth-window = 4
face = "all"
detect-every = 3
no-face = "pass"
drop-lost = true
feather = 0.1
codec = "ffv1"
no-audio = true
start = 1.5
end = 4
overwrite = true
"""


def test_command_line_mapping_and_toml_give_the_same_options_and_configuration():
    from_cli = ConvertOptions.from_args(_parser().parse_args(NON_DEFAULT_ARGV))
    from_json = ConvertOptions.from_mapping(NON_DEFAULT)
    from_toml = ConvertOptions.from_mapping(tomllib.loads(NON_DEFAULT_TOML))
    assert from_cli == from_json == from_toml
    assert from_cli.as_dict(changed_only=True) == NON_DEFAULT
    cfg = from_cli.to_config(CPU, Precision())
    assert cfg == convert_config(_parser().parse_args(NON_DEFAULT_ARGV), CPU, Precision())
    assert cfg.generate.keyframes == ((0.0, 0.0), (2.0, 1.0)) and cfg.smooth.strength == (1.0, 0.5, 0.0)
    assert cfg.invert.batch_size == cfg.generate.batch_size == 3 and cfg.generate.batch_pixels == 0
    assert (cfg.video_in.start, cfg.video_in.end, cfg.video_out.keep_audio) == (1.5, 4.0, False)
    assert cfg.face.faces == "all" and cfg.face.detect_every == 3 and cfg.video_out.codec == "ffv1"


def test_a_mapping_round_trips_and_option_names_leave_out_the_model():
    opts = ConvertOptions.from_mapping(NON_DEFAULT)
    assert ConvertOptions.from_mapping(opts.as_dict()) == opts
    assert option_names()[0] == "device" and "model" not in option_names() and len(option_names()) == 29
    assert parse_options({"style_code": "first-frame"}).style_code == "first-frame"


def test_jobs_may_not_set_process_options():
    with pytest.raises(UsageError, match="belongs to the process"):
        ConvertOptions.from_mapping({"threads": 4})
    assert ConvertOptions.from_mapping({"threads": 4}, job=False).threads == 4
    assert "threads" not in ConvertOptions(threads=4).as_dict(job_only=True)


@pytest.mark.parametrize(("options", "message"), [
    ({"strength": "strong"}, "--strength 'strong'"),
    ({"smooth_strength": "1,2"}, "one number or three"),
    ({"smooth_window": 0}, "window must be >= 1"),
    ({"codec": "h264", "crf": 99}, "crf"),
    ({"start": 3, "end": 2}, "must be after start"),
    ({"output_mode": "crop", "face": "all"}, "crop output needs a single face"),
])
def test_values_and_combinations_the_configuration_rejects_are_usage_errors(options, message):
    opts = ConvertOptions.from_mapping(options)              # each value alone has the right type
    with pytest.raises(UsageError, match=message) as err:
        opts.check()
    assert err.value.exit_code == 2


def test_an_explicit_batch_is_exact_and_an_automatic_one_is_sized_for_the_device():
    auto = ConvertOptions().to_config(CPU, Precision())
    assert auto.invert.batch_size == 8 and auto.generate.batch_pixels == 128 * 128 * 8
    exact = ConvertOptions(batch_size=2).to_config(CPU, Precision())
    assert exact.invert.batch_size == exact.generate.batch_size == 2 and exact.invert.batch_pixels == 0


def test_require_model():
    with pytest.raises(UsageError, match="no model given"):
        ConvertOptions().require_model()
    assert ConvertOptions(model="pixar").require_model() == "pixar"
