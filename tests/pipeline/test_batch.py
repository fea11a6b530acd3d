"""batches: grouping by face count and by a pixel budget; the automatic batch settings per device."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.options import add_convert_options, convert_config
from pipeline.runtime.batch import batches, crop_pixels
from pipeline.runtime.device import Precision, default_batch_pixels, default_batch_size, resolve_precision


def _rec(*sides: int) -> list:
    """A record carrying one face per side, each with a ``side x side`` crop."""
    return [SimpleNamespace(pixels=np.zeros((s, s, 3), np.uint8)) for s in sides]


def _sizes(groups: list[list[list]]) -> list[int]:
    return [len(g) for g in groups]


def test_batches_fill_up_to_the_face_count():
    recs = [_rec(8)] * 7
    assert _sizes(list(batches(recs, 3, len))) == [3, 3, 1]


def test_records_without_faces_ride_along():
    recs = [_rec(8), _rec(), _rec(8), _rec(8)]
    assert _sizes(list(batches(recs, 2, len))) == [3, 1]


def test_a_pixel_budget_ends_a_batch_before_it_would_overflow():
    recs = [_rec(128)] * 10 + [_rec(256)] * 3 + [_rec(400)] + [_rec(128)] * 2
    out = list(batches(recs, 8, len, budget=128 * 128 * 8, weight=crop_pixels))
    # 8 crops of 128 fill the budget; 2 of 128 + 1 of 256 fit (98304), the 2nd 256 would not;
    # 2 of 256 fit exactly; a 400 crop alone is over the budget and goes on its own
    assert _sizes(out) == [8, 3, 2, 1, 2]
    assert [sum(crop_pixels(r) for r in b) for b in out] == [131072, 98304, 131072, 160000, 32768]


def test_a_budget_needs_a_weight():
    with pytest.raises(ValueError):
        list(batches([_rec(8)], 2, len, budget=10))


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
    assert on.paste.device == "cuda" and on.generate.on_device
    assert on.generate.batch_size == 16 and on.generate.batch_pixels == 8 * 2**30 // 2 // (6 * 1024)
    for argv in (["--codec", "prores"], ["--output-mode", "crop"], ["--pix-fmt", "yuv444p"]):
        off = cfg(*argv)
        assert off.paste.device is None and not off.generate.on_device, argv
    assert _cfg().paste.device is None                                   # never on a CPU


def test_code_every_must_be_positive():
    from pipeline.errors import UsageError

    assert _cfg("--code-every", "3").invert.code_every == 3
    with pytest.raises(UsageError, match="code_every"):
        _cfg("--code-every", "0")
