"""The bf16 CPU route (pipeline/model/fused.py): fused bias and activation, kept and packed weights.

Each test compares the route with what it replaces: autocast alone (the route switched off), a
fresh model (nothing kept), or float32. The tiny preset covers every generator variant: dilated
stand-ins, true x2 up-convs with the blur and, below 17 channels, the folded 6x6 one.
"""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline import build_model, make_random_checkpoint
from pipeline.model import fused
from tests.model.conftest import frames

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def psnr(y: torch.Tensor, ref: torch.Tensor) -> float:
    mse = (y.float().clamp(-1, 1) - ref.float().clamp(-1, 1)).square().mean().item() / 4   # range 2 -> 1
    return float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()


@pytest.fixture(scope="module")
def ckpt():
    return make_random_checkpoint("tiny", seed=3)


@pytest.fixture()
def model(ckpt):
    """A fresh tiny model per test (the route keeps weights on its modules)."""
    return build_model(ckpt)


def _latents(model, batch: int, shared: bool, seed: int = 0):
    x1 = frames(batch, 32, 32, seed=seed)
    x2 = frames(1 if shared else batch, 64, 64, seed=seed + 100)
    with torch.no_grad():
        return model.invert(x1, w_plus=model.codes(x2))


def _generate(model, latents, route: bool = True, autocast: bool = True):
    with torch.no_grad(), (BF16 if autocast else torch.autocast("cpu", enabled=False)):
        if route:
            return model.generate(latents)
        saved, fused._POINTWISE = fused._POINTWISE, None
        try:
            return model.generate(latents)
        finally:
            fused._POINTWISE = saved


@pytest.mark.parametrize("shared", [True, False], ids=["shared-style", "per-sample-style"])
def test_route_matches_autocast_and_float32(model, shared):
    lat = _latents(model, 3, shared)
    with torch.no_grad(), BF16:
        assert fused.on_route(lat.feature)
    y = _generate(model, lat)
    y_autocast = _generate(model, lat, route=False)
    y32 = _generate(model, lat, autocast=False)
    assert y.dtype == y_autocast.dtype == torch.float32 and y.shape == y32.shape == (3, 3, 128, 128)
    assert psnr(y, y32) >= 50.0             # the guard is 40 dB; autocast alone gives 58-61 dB here
    assert psnr(y, y_autocast) >= 50.0
    assert (y - y_autocast).abs().max().item() < 0.02


def test_kept_weights_follow_the_style(model, ckpt):
    """A style seen again reuses its kept weights bit for bit; a new style is not served old ones."""
    a, b = _latents(model, 2, True, seed=0), _latents(model, 2, True, seed=1)
    assert not torch.equal(a.w_plus, b.w_plus)
    ya = _generate(model, a)
    yb = _generate(model, b)
    assert torch.equal(_generate(model, a), ya)
    assert torch.equal(_generate(build_model(ckpt), b), yb)      # nothing kept: same result


def test_kept_weights_follow_parameters_and_input_shape(model, ckpt):
    lat = _latents(model, 2, True)
    y_before = _generate(model, lat)
    with torch.no_grad():                       # in place, as load_state_dict writes parameters
        model.decoder.convs[0].conv.weight.mul_(1.5)
        model.encoder.fusion[0].fusion_out.weight.mul_(0.5)
    fresh = build_model(ckpt)
    fresh.load_state_dict(model.state_dict())
    y_after = _generate(model, lat)
    assert not torch.equal(y_after, y_before)
    assert torch.equal(y_after, _generate(fresh, lat))
    three = _latents(model, 3, True)            # another batch size: weights packed for its shape
    assert torch.equal(_generate(model, three), _generate(fresh, three))


def test_models_that_ran_the_route_still_copy_and_pickle(model):
    """Kept weights (MKLDNN tensors cannot be serialized) live beside the modules, not in them."""
    lat = _latents(model, 2, True)
    y = _generate(model, lat)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.equal(_generate(copied, lat), y)
    buf = io.BytesIO()
    torch.save(model, buf)
    assert buf.tell() > 0


def test_per_sample_styles_are_not_served_a_shared_weight(model):
    shared, per_sample = _latents(model, 2, True), _latents(model, 2, False)
    _generate(model, shared)
    y = _generate(model, per_sample)
    assert psnr(y, _generate(model, per_sample, autocast=False)) >= 40.0
    assert not torch.equal(y[0], y[1])


def test_route_only_under_cpu_bf16_autocast_without_grad():
    x = torch.zeros(1, 4, 8, 8)
    assert not fused.on_route(x)                                  # float32
    with BF16:
        assert not fused.on_route(x)                              # autograd on
        with torch.no_grad():
            assert fused.on_route(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        assert not fused.on_route(x)


def test_float32_unchanged_by_the_route(model):
    """float32 never takes the route: the output equals the one of a run with the route disabled."""
    lat = _latents(model, 2, False)
    assert torch.equal(_generate(model, lat, autocast=False), _generate(model, lat, route=False, autocast=False))


def test_fused_conv_and_flop_count():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 9, 9, generator=g).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(6, 8, 3, 3, generator=g) / 8, torch.randn(6, generator=g)
    want = torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, b, padding=2, dilation=2), 0.2)
    with torch.no_grad():
        with FlopCounterMode(display=False) as flops:
            y = fused.conv(x, fused.pack(w, x.shape, 2, 2), b, 2, 2, slope=0.2)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), want, atol=0.05, rtol=0.02)
    assert flops.get_total_flops() == 2 * 2 * 6 * 8 * 9 * 9 * 9          # 2 * B * C_out * C_in * k * k * H * W
    bad = torch.nn.Conv2d(8, 6, 3, stride=2)
    with pytest.raises(ValueError, match="stride-1"):
        fused.module_conv(bad, x)
