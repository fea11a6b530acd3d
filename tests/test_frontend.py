"""The front-end layer: what every route opens (device, precision, threads, model, detector, config file)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.errors import CheckpointError, UsageError
from pipeline.frontend import (
    FrontEnd,
    ReportOptions,
    check_model,
    config_path,
    model_tag,
    open_model,
    read_config,
)
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision


def test_open_resolves_device_precision_and_configuration():
    front = FrontEnd.open(ConvertOptions(device="cpu", precision="bf16", batch_size=2, style_code="first-frame"))
    assert front.device == torch.device("cpu")
    assert front.precision == Precision(torch.float32, torch.bfloat16)     # bf16 on a CPU: autocast over fp32
    assert front.config == front.options.to_config(front.device, front.precision)
    assert front.config.invert.style_code == "first-frame" and front.config.generate.batch_size == 2


def test_open_on_a_given_device_ignores_the_option_and_fp16_on_a_cpu_is_refused():
    assert FrontEnd.open(ConvertOptions(device="cuda:7"), device="cpu").device == torch.device("cpu")
    with pytest.raises(UsageError, match="fp16"):
        FrontEnd.open(ConvertOptions(device="cpu", precision="fp16"))
    with pytest.raises(UsageError, match="crop output needs a single face"):
        FrontEnd.open(ConvertOptions(device="cpu", output_mode="crop", face="all"))


def test_threads_apply_to_the_process():
    before = torch.get_num_threads()
    try:
        FrontEnd.open(ConvertOptions(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_model_by_path_is_loaded_on_the_device_and_checked(tiny_ckpt_path):
    front = FrontEnd.open(ConvertOptions(model=str(tiny_ckpt_path), device="cpu"))
    model = front.load_model()
    assert model.arch.input_nc == 3 and model.latent_avg.device == torch.device("cpu")
    assert front.tag == "tiny"
    with pytest.raises(UsageError, match="no model given"):
        FrontEnd.open(ConvertOptions(device="cpu")).load_model()
    with pytest.raises(CheckpointError):
        open_model(str(tiny_ckpt_path.with_name("missing.pt")), torch.device("cpu"), Precision())


def test_sketch_and_mask_models_are_refused_for_video():
    sketch = SimpleNamespace(arch=SimpleNamespace(input_nc=1))
    with pytest.raises(UsageError, match="1-channel sketches/masks"):
        check_model(sketch, "sketch2face")                     # type: ignore[arg-type]


def test_model_tag():
    assert model_tag("pixar") == "pixar" and model_tag("/m/styleganex_toonify_pixar.pt") == "styleganex_toonify_pixar"


def test_the_detector_follows_the_options():
    pytest.importorskip("dlib")
    detector = FrontEnd.open(ConvertOptions(device="cpu", detect_max_side=360)).make_detector()
    assert detector.max_side == 360


def test_report_mode():
    assert ReportOptions().mode == "bar"
    assert ReportOptions(quiet=True).mode == "none" and ReportOptions(progress="none").mode == "none"
    assert ReportOptions(quiet=True, progress="json").mode == "json"
    with pytest.raises(UsageError, match="invalid choice"):
        ReportOptions(progress="loud")


def test_config_file_is_checked_and_typed(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[convert]\nmodel = "pixar"\nbatch-size = 4\ncrf = "20"\nstyle_code = "per-frame"\n'
                    'quiet = true\n[other]\nx = 1\n')
    assert read_config(path) == {"model": "pixar", "batch_size": 4, "crf": 20, "style_code": "per-frame",
                                 "quiet": True}
    path.write_text("[convert]\nbogus = 1\nalso-bogus = 2\n")
    with pytest.raises(UsageError, match="unknown option\\(s\\) also_bogus, bogus"):
        read_config(path)
    path.write_text('[convert]\nface = "some"\n')
    with pytest.raises(UsageError, match="invalid choice: 'some'"):
        read_config(path)
    path.write_text("[convert\n")
    with pytest.raises(UsageError, match="cannot read config file"):
        read_config(path)
    with pytest.raises(UsageError, match="cannot read config file"):
        read_config(tmp_path / "missing.toml")


def test_config_path_explicit_then_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FACESTYLE_CONFIG", raising=False)
    assert config_path() is None
    home = tmp_path / ".config" / "facestyle" / "config.toml"
    home.parent.mkdir(parents=True)
    home.write_text("[convert]\n")
    assert config_path() == home
    monkeypatch.setenv("FACESTYLE_CONFIG", "/etc/facestyle.toml")
    assert config_path() == Path("/etc/facestyle.toml")
    assert config_path("mine.toml") == Path("mine.toml")
