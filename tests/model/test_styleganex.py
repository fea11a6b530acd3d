"""The public model API on the tiny preset: shapes, batching, code reuse, no wasted work."""
from __future__ import annotations

import pytest
import torch

from pipeline import Latents
from tests.model.conftest import frames


@pytest.mark.parametrize("h,w", [(64, 64), (64, 96), (72, 72), (40, 56)])
def test_output_is_4x_the_crop(tiny_model, h, w):
    with torch.no_grad():
        y = tiny_model.stylize(frames(1, h, w), frames(1, 64, 64, seed=1))
    assert y.shape == (1, 3, 4 * h, 4 * w)


def test_rejects_sizes_that_are_not_multiples_of_8(tiny_model):
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny_model.stylize(frames(1, 60, 64))
    with pytest.raises(ValueError, match="NCHW"):
        tiny_model.stylize(torch.zeros(3, 64, 64))


def test_batch_of_n_equals_n_single_calls(tiny_model):
    x1, x2 = frames(4, 64, 64), frames(1, 64, 64, seed=9)
    with torch.no_grad():
        batch = tiny_model.stylize(x1, x2)
        singles = torch.cat([tiny_model.stylize(x1[i:i + 1], x2) for i in range(4)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


def test_x2_of_batch_1_is_shared_and_codes_can_be_precomputed(tiny_model):
    x1, x2 = frames(3, 64, 64), frames(1, 64, 64, seed=2)
    with torch.no_grad():
        shared = tiny_model.stylize(x1, x2)
        repeated = tiny_model.stylize(x1, x2.expand(3, -1, -1, -1))
        w = tiny_model.codes(x2)
        reused = tiny_model.generate(tiny_model.invert(x1, w_plus=w))
    assert w.shape == (1, 18, tiny_model.arch.widths.style_dim)
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared, reused, atol=0, rtol=0)


def test_x1_pass_skips_unneeded_layers_when_x2_is_given(tiny_model):
    """With x2, the x1 pass runs stem + units 0-20 only: no units 21-23, FPN or style heads."""
    seen: dict[str, list[int]] = {"unit21": [], "heads": [], "unit20": []}
    hooks = [
        tiny_model.encoder.body[21].register_forward_hook(lambda m, i, o: seen["unit21"].append(i[0].shape[0])),
        tiny_model.encoder.body[20].register_forward_hook(lambda m, i, o: seen["unit20"].append(i[0].shape[0])),
        tiny_model.encoder.styles[17].register_forward_hook(lambda m, i, o: seen["heads"].append(i[0].shape[0])),
    ]
    try:
        with torch.no_grad():
            tiny_model.stylize(frames(5, 64, 64), frames(1, 64, 64, seed=3))
    finally:
        for h in hooks:
            h.remove()
    assert seen["unit20"] == [5, 1]      # x1 batch and the x2 image
    assert seen["unit21"] == [1]         # only for x2
    assert seen["heads"] == [1]


def test_x2_none_takes_codes_from_x1(tiny_model):
    x1 = frames(2, 64, 64)
    with torch.no_grad():
        own = tiny_model.stylize(x1)
        explicit = torch.cat([tiny_model.stylize(x1[i:i + 1], x1[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(own, explicit, atol=1e-5, rtol=0)


def test_latents_slice_and_cat(tiny_model):
    with torch.no_grad():
        lat = tiny_model.invert(frames(3, 64, 64), frames(1, 64, 64, seed=4))
        whole = tiny_model.generate(lat)
        parts = tiny_model.generate(Latents.cat([lat[0], lat[1:3]]))
    assert len(lat) == 3 and len(lat[1:3]) == 2 and len(lat.skips) == 7
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=0)


def test_bf16_on_cpu_is_close_to_fp32(tiny_ckpt_path):
    from pipeline import load_model

    fp32 = load_model(tiny_ckpt_path)
    bf16 = load_model(tiny_ckpt_path, dtype=torch.bfloat16)
    x = frames(1, 64, 64)
    with torch.no_grad():
        a = fp32.stylize(x)
        b = bf16.stylize(x).float()
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).abs().mean() < 0.05 * a.abs().mean() + 0.01
