"""Devices and precision: names, dtypes, the autocast rule on a CPU, and the automatic batch settings
per device that the conversion configuration takes from them."""
from __future__ import annotations

import argparse

import pytest
import torch

from pipeline.errors import UsageError
from pipeline.options import add_convert_options, convert_config
from pipeline.runtime.device import (
    Precision,
    default_batch_pixels,
    default_batch_size,
    resolve_device,
    resolve_dtype,
    resolve_precision,
)


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(UsageError, match="unsupported device"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")


def test_precisions():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cpu) == Precision(torch.float32, None)
    assert resolve_precision("bf16", cpu) == Precision(torch.float32, torch.bfloat16)     # autocast over fp32
    assert resolve_precision("bf16", cuda) == Precision(torch.bfloat16, None)             # weights cast
    assert resolve_precision("fp16", cuda) == Precision(torch.float16, None)
    with pytest.raises(UsageError, match="bf16"):
        resolve_dtype("fp16", cpu)
    with pytest.raises(UsageError, match="unknown precision"):
        resolve_dtype("fp8", cpu)
    with Precision(torch.float32, torch.bfloat16).context(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with Precision().context(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def _cfg(*argv: str, precision: str = "fp32"):
    ap = argparse.ArgumentParser()
    add_convert_options(ap)
    args = ap.parse_args(list(argv))
    return convert_config(args, torch.device("cpu"), resolve_precision(precision, torch.device("cpu")))


def test_automatic_batches_on_a_cpu_are_limited_by_pixels():
    cfg = _cfg()
    assert cfg.generate.batch_size == cfg.invert.batch_size == 8
    assert cfg.generate.batch_pixels == cfg.invert.batch_pixels == 128 * 128 * 8
    assert _cfg(precision="bf16").generate.batch_pixels == 256 * 256 * 4
    explicit = _cfg("--batch-size", "3")
    assert explicit.generate.batch_size == 3 and explicit.generate.batch_pixels == 0   # exactly as asked


def test_on_cuda_the_batch_is_what_fits_in_free_memory():
    cuda = torch.device("cuda")
    half = Precision(torch.float16)
    h200 = default_batch_pixels(cuda, half, free_bytes=130 * 10**9)
    assert h200 // (512 * 512) == 40                                 # 16 faces cap it (default_batch_size)
    small = default_batch_pixels(cuda, half, free_bytes=4 * 2**30)
    assert small // (512 * 512) == 1 and small // (256 * 256) == 5
    assert default_batch_pixels(cuda, Precision(torch.float32), free_bytes=4 * 2**30) == small // 2
    assert default_batch_pixels(cuda, half, free_bytes=0) == 1        # never below one face
    assert default_batch_size(cuda) == 16 and default_batch_size(torch.device("cpu")) == 8


def test_cuda_pastes_on_the_device_when_the_output_is_4_2_0(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 16 * 2**30))
    cuda = torch.device("cuda")

    def cfg(*argv: str):
        ap = argparse.ArgumentParser()
        add_convert_options(ap)
        return convert_config(ap.parse_args(list(argv)), cuda, Precision(torch.float16))

    on = cfg()
    assert on.paste_device(cuda) == cuda
    assert on.paste_device(cuda, is_image=True) is None                    # a photo is written from RGB
    assert on.generate.batch_size == 16 and on.generate.batch_pixels == 8 * 2**30 // 2 // (6 * 1024)
    for argv in (["--codec", "prores"], ["--output-mode", "crop"], ["--pix-fmt", "yuv444p"]):
        off = cfg(*argv)
        assert off.paste_device(cuda) is None, argv
    assert _cfg().paste_device(torch.device("cpu")) is None              # never on a CPU


def test_code_every_must_be_positive():
    assert _cfg("--code-every", "3").invert.code_every == 3
    with pytest.raises(UsageError, match="code_every"):
        _cfg("--code-every", "0")
