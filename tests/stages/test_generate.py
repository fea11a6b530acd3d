"""generate: stylized crops 4x the crop, equal to calling the tiny model directly, per crop size and
batch; strength keyframes; crops kept on the device as tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.records import Inverted, Located
from pipeline.runtime.batch import to_images, to_pixels
from pipeline.stages.generate import GenerateConfig, generate, parse_keyframes
from tests.stages.test_invert import CPU, face, located


def inverted(model, *recs: Located) -> list[Inverted]:
    out = []
    with torch.inference_mode():
        for rec in recs:
            lats = [model.invert(to_images([f.pixels], CPU, torch.float32),
                                 to_images([f.aligned], CPU, torch.float32)) for f in rec.faces]
            out.append(Inverted(rec, lats))
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_crops_are_the_models_output(tiny_model, batch):
    recs = inverted(tiny_model, located(face(0, 1), i=0), located(i=1), located(face(0, 2, side=48), face(1, 3), i=2))
    out = list(generate(recs, tiny_model, GenerateConfig(batch_size=batch)))
    assert [o.inverted for o in out] == recs and [len(o.images) for o in out] == [1, 0, 2]
    for o in out:
        for f, lat, image in zip(o.inverted.located.faces, o.inverted.latents, o.images, strict=True):
            side = f.pixels.shape[0]
            assert isinstance(image, np.ndarray) and image.shape == (4 * side, 4 * side, 3) and image.dtype == np.uint8
            with torch.inference_mode():
                want = to_pixels(tiny_model.generate(lat))[0]
            diff = np.abs(image.astype(int) - want.astype(int))
            assert diff.max() <= (0 if batch == 1 else 1)


def test_strength_keyframes(tiny_model):
    cfg = GenerateConfig(keyframes=parse_keyframes("0:0,1:2"))
    assert [cfg.strength_at(t) for t in (-1, 0, 0.25, 1, 5)] == [0.0, 0.0, 0.5, 2.0, 2.0]
    assert GenerateConfig(strength=0.7).strength_at(3.0) == 0.7
    with pytest.raises(ValueError, match="seconds:strength"):
        parse_keyframes("0:0,soon:1")
    with pytest.raises(ValueError, match="increase"):
        parse_keyframes("1:0,1:1")


def test_keyframed_strength_reaches_the_model(tiny_model):
    rec = inverted(tiny_model, located(face(0, 1), i=5))               # time 0.5 s
    seen = []
    real = tiny_model.generate

    def spy(latents, editing_scale=1.0, **kw):
        seen.append(editing_scale)
        return real(latents, editing_scale=editing_scale, **kw)

    tiny_model.generate = spy
    try:
        list(generate(rec, tiny_model, GenerateConfig(keyframes=((0.0, 0.0), (1.0, 2.0)))))
        list(generate(rec, tiny_model, GenerateConfig(strength=0.3)))
    finally:
        del tiny_model.generate
    assert torch.equal(seen[0], torch.tensor([1.0])) and seen[1] == 0.3


def test_keep_on_device_gives_uint8_tensors(tiny_model):
    rec = inverted(tiny_model, located(face(0, 1)))
    (host,) = generate(rec, tiny_model, GenerateConfig())
    (dev,) = generate(rec, tiny_model, GenerateConfig(), keep_on_device=True)
    image = dev.images[0]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.device == CPU
    assert np.array_equal(image.numpy(), host.images[0])


def test_config_checks():
    with pytest.raises(ValueError):
        GenerateConfig(batch_size=0)
    with pytest.raises(ValueError):
        GenerateConfig(batch_pixels=-1)
