"""Parity with the official implementation: ../shared/golden whole-model cases and module vectors."""
from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch

from pipeline import load_model
from pipeline.model.checkpoint import is_ignorable_key
from pipeline.model.encoder import FusionLayer, GradualStyleBlock, IRSEUnit
from pipeline.model.layers import EqualLinear, ModulatedConv2d, StyledConv, ToRGB

# Cases ordered by checkpoint so each 1.2 GB model is built once.
CASES = ["toonify_64", "toonify_64x96", "toonify_x2none", "toonify_batch3", "toonify_128",
         "edit_scale1", "edit_scale-0.5", "inversion_64", "sr_64"]


# Fidelity guard of the reduced-precision mode offered on CPUs (--precision bf16 = autocast):
# PSNR of the uint8 frames against the official float32 output must stay >= 40 dB.
BF16_GUARD = ("toonify_128", "edit_scale1", "inversion_64", "sr_64")


def psnr_uint8(y: torch.Tensor, ref: torch.Tensor) -> float:
    def q(a):
        return ((a.clamp(-1, 1) + 1) * 127.5).floor()

    mse = (q(y) - q(ref)).square().mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()


def _assert_case(y: torch.Tensor, want: torch.Tensor, tol: dict) -> None:
    assert y.shape == want.shape
    err = (y - want).abs()
    assert err.max().item() <= tol["atol"], f"max abs error {err.max().item():.3e}"
    assert err.mean().item() <= tol["mean_abs"], f"mean abs error {err.mean().item():.3e}"


@pytest.mark.parametrize("name", CASES)
def test_golden_case(name, recipe, golden_models):
    info = recipe.case_info(name)
    tol = recipe.load_manifest()["tolerance"]
    model = golden_models.get(info["preset"], info["seed"])
    case = recipe.load_case(name)
    scale = info["editing_scale"] if info["editing_scale"] is not None else 1.0
    with torch.no_grad():
        latents = model.invert(case["x1"], case.get("x2"))
        y = model.generate(latents, editing_scale=scale)
    _assert_case(y, case["y"], tol)
    if name in BF16_GUARD:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = model.generate(model.invert(case["x1"], case.get("x2")), editing_scale=scale).float()
        assert psnr_uint8(y16, case["y"]) >= 40.0, "bf16 autocast misses the fidelity guard"
    if "editing_w" in case:                      # the direction the official forward actually used
        torch.testing.assert_close(model.editing_w[0:1] * scale, case["editing_w"], atol=0, rtol=0)


def test_bf16_fidelity_on_real_frames(recipe, golden_models, media_dir):
    """The bf16 guard on real pixels too: three frames of a real clip (centre square, 128x128 crop,
    codes from a 256x256 view) through the official-size toonify model, bf16 autocast vs float32."""
    import av
    import torch.nn.functional as F

    info = recipe.case_info("toonify_128")
    model = golden_models.get(info["preset"], info["seed"])
    with av.open(str(media_dir / "390.mp4")) as src:
        frames = [f.to_ndarray(format="rgb24") for f in islice(src.decode(video=0), 3)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    side = min(x.shape[-2:])
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    x = x[..., top:top + side, left:left + side]
    x1 = F.interpolate(x, size=(128, 128), mode="area")
    x2 = F.interpolate(x[:1], size=(256, 256), mode="area")
    with torch.no_grad():
        y32 = model.stylize(x1, x2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = model.stylize(x1, x2).float()
    assert y16.shape == y32.shape == (3, 3, 512, 512)
    psnr = psnr_uint8(y16, y32)
    assert psnr >= 40.0, f"bf16 autocast misses the fidelity guard on real frames: {psnr:.1f} dB"


def test_golden_intermediates(recipe, golden_models):
    """W+, the first-layer feature and the skip features of toonify_64 match the official ones."""
    model = golden_models.get("toonify", 1)
    case = recipe.load_case("toonify_64")
    atol = recipe.load_manifest()["tolerance"]["atol"]
    with torch.no_grad():
        latents = model.invert(case["x1"], case["x2"])
    torch.testing.assert_close(latents.w_plus, case["w_plus"], atol=atol, rtol=0)
    torch.testing.assert_close(latents.feature, case["f"], atol=atol, rtol=0)
    for i, skip in enumerate(latents.skips):
        torch.testing.assert_close(skip, case[f"skip.{i}"], atol=atol, rtol=0)


def test_batch_equals_single_frames(recipe, golden_models):
    """toonify_batch3: codes computed once from one x2 row and broadcast; each frame = its own run."""
    model = golden_models.get("toonify", 1)
    case = recipe.load_case("toonify_batch3")
    tol = recipe.load_manifest()["tolerance"]
    with torch.no_grad():
        w = model.codes(case["x2"][0:1])
        y = model.generate(model.invert(case["x1"], w_plus=w))
        singles = torch.cat([model.stylize(case["x1"][i:i + 1], case["x2"][i:i + 1]) for i in range(3)])
    _assert_case(y, case["y"], tol)
    assert (y - singles).abs().max().item() <= 1e-5


def test_golden_via_load_model(recipe, tmp_path):
    """The path-based loader on an official-size file written in the official layout (sr/4)."""
    path = tmp_path / "sr_4.pt"
    torch.save(recipe.make_checkpoint("sr", 4), path)
    model = load_model(path)
    case = recipe.load_case("sr_64")
    with torch.no_grad():
        y = model.stylize(case["x1"], case["x2"])
    _assert_case(y, case["y"], recipe.load_manifest()["tolerance"])


def _build(entry):
    a, cls = dict(entry["args"]), entry["class"]
    if cls == "ModulatedConv2d":
        return ModulatedConv2d(**a)
    if cls == "StyledConv":
        return StyledConv(**a)
    if cls == "ToRGB":
        return ToRGB(**a)
    if cls == "FusionLayer":
        return FusionLayer(a["inchannel"], a["outchannel"], 512, a["use_skip_torgb"], a["use_att"])
    if cls == "bottleneck_IR_SE":
        return IRSEUnit(a["in_channel"], a["depth"], a["stride"])
    if cls == "GradualStyleBlock":
        return GradualStyleBlock(**a)
    if cls == "EqualLinear":
        return EqualLinear(**a)
    raise AssertionError(cls)


MODULES = ["modconv_up_dil8", "modconv_up_dil4", "modconv_up_dil2", "modconv_dil8", "modconv_dil4",
           "modconv_dil2", "modconv_dil1", "modconv_up2x", "styledconv_dil2_noise", "torgb_dil8", "torgb_dil4",
           "torgb_dil2", "torgb_up2x", "torgb_noskip", "fusion_noatt", "fusion_att1", "fusion_att1_no_editing_w",
           "fusion_skip_torgb", "irse_s2_conv_shortcut", "irse_s2_pool_shortcut", "irse_s1",
           "gradual_style_block", "equal_linear_mapping", "equal_linear"]


@pytest.mark.parametrize("name", MODULES)
def test_golden_module(name, golden_modules, recipe):
    entry = golden_modules[name]
    module = _build(entry).eval()
    params = entry["params"]
    learned = {k: v for k, v in params.items() if not is_ignorable_key(k) or k.endswith("num_batches_tracked")}
    module.load_state_dict(learned, strict=True)
    # the constants we recreate instead of loading must equal the official buffers
    from pipeline.model.layers import BLUR_3X3, BLUR_4X4
    for k, v in params.items():
        if k.endswith(("blur.kernel", "upsample.kernel")):
            torch.testing.assert_close(v, BLUR_4X4 * 4, atol=0, rtol=0)
        elif k.endswith("blur_weight"):
            torch.testing.assert_close(v, BLUR_3X3.view(1, 1, 3, 3), atol=0, rtol=0)
    inp = entry["inputs"]
    with torch.no_grad():
        if entry["class"] == "FusionLayer":
            out = module(inp["feat"], inp["out"], inp["skip"], inp.get("editing_w"))
        elif "noise" in inp:
            out = module(inp["input"], inp["style"], noise=inp["noise"])
        else:
            out = module(*inp.values())
    outs = out if isinstance(out, tuple) else (out,)
    atol = recipe.load_manifest()["module_tolerance"]["atol"]
    assert len(outs) == len(entry["outputs"])
    for got, want in zip(outs, entry["outputs"], strict=True):
        torch.testing.assert_close(got, want, atol=atol, rtol=0)
