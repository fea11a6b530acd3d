"""upfirdn2d: reference against hand-computed values, golden vectors and a literal loop oracle;
properties (odd shapes, strides, dtypes, gradients); CUDA against the reference when present."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from kernels import upfirdn2d
from tests.conftest import TOLERANCE

U = sys.modules["kernels.upfirdn2d"]  # the module (the package attribute is the function)
HAS_CUDA = torch.cuda.is_available()
GOLDEN = [
    "upfirdn2d_up2_pad2_1",
    "upfirdn2d_blur_pad1_1",
    "upfirdn2d_down2_pad1_1",
    "upfirdn2d_asym_up2",
    "upfirdn2d_asym_crop",
]


def naive(x, k, up=1, down=1, pad=(0, 0), gain=1.0):
    """Spec 7.1 with explicit loops over output samples and taps (tiny inputs only)."""
    g = U.make_geometry(up, down, pad)
    x = x.double()
    k = k.double() * gain
    n, c, h, w = x.shape
    kh, kw = k.shape
    hp, wp = h * g.up_y + g.pad_y0 + g.pad_y1, w * g.up_x + g.pad_x0 + g.pad_x1

    def sample(b, ch, j, i):  # the stuffed and padded signal P[j, i]
        my, mx = j - g.pad_y0, i - g.pad_x0
        if my < 0 or mx < 0 or my % g.up_y or mx % g.up_x or my >= h * g.up_y or mx >= w * g.up_x:
            return 0.0
        return float(x[b, ch, my // g.up_y, mx // g.up_x])

    out_h, out_w = (hp - kh) // g.down_y + 1, (wp - kw) // g.down_x + 1
    y = torch.zeros(n, c, out_h, out_w, dtype=torch.float64)
    for b in range(n):
        for ch in range(c):
            for oy in range(out_h):
                for ox in range(out_w):
                    y[b, ch, oy, ox] = sum(
                        sample(b, ch, oy * g.down_y + a, ox * g.down_x + e) * float(k[kh - 1 - a, kw - 1 - e])
                        for a in range(kh)
                        for e in range(kw)
                    )
    return y


def gather_like_cuda(x, k, g):
    """The loop of csrc/upfirdn2d.cu in Python: visit only the input samples under each window."""
    n, c, h, w = x.shape
    kh, kw = k.shape
    out_h = U.out_length(h, g.up_y, g.down_y, g.pad_y0, g.pad_y1, kh)
    out_w = U.out_length(w, g.up_x, g.down_x, g.pad_x0, g.pad_x1, kw)
    y = torch.zeros(n, c, out_h, out_w, dtype=torch.float64)
    for oy in range(out_h):
        for ox in range(out_w):
            wy, wx = oy * g.down_y - g.pad_y0, ox * g.down_x - g.pad_x0
            iy0, iy1 = max(-(-wy // g.up_y), 0), min((wy + kh - 1) // g.up_y, h - 1)
            ix0, ix1 = max(-(-wx // g.up_x), 0), min((wx + kw - 1) // g.up_x, w - 1)
            for iy in range(iy0, iy1 + 1):
                for ix in range(ix0, ix1 + 1):
                    ay, ax = iy * g.up_y - wy, ix * g.up_x - wx
                    assert 0 <= ay < kh and 0 <= ax < kw
                    y[:, :, oy, ox] += x[:, :, iy, ix] * k[kh - 1 - ay, kw - 1 - ax]
    return y


def blur_kernel(gain=1.0):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(k, k) / 64 * gain


# --- hand-computed values ----------------------------------------------------------------------


def test_hand_up2_negative_pad_2x2_kernel():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    k = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # Stuffed 6x6, cropped to 5x5, valid 2x2 true convolution: each output picks one tap.
    want = torch.tensor(
        [[4.0, 6.0, 8.0, 9.0], [8.0, 5.0, 10.0, 6.0], [16.0, 15.0, 20.0, 18.0], [14.0, 8.0, 16.0, 9.0]]
    )
    y = upfirdn2d(x, k, up=2, pad=(0, -1), impl="ref")
    torch.testing.assert_close(y[0, 0], want, atol=0, rtol=0)


def test_hand_down2_row_kernel_with_gain():
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 5.0]]]])
    k = torch.tensor([[1.0, 2.0, 3.0]])
    # P = [0, 1, 2, 3, 4, 5]; valid true convolution = [4, 10, 16, 22]; every 2nd = [4, 16].
    y = upfirdn2d(x, k, down=2, pad=(1, 0, 0, 0), impl="ref")
    torch.testing.assert_close(y, torch.tensor([[[[4.0, 16.0]]]]), atol=0, rtol=0)
    y = upfirdn2d(x, k, down=2, pad=(1, 0, 0, 0), gain=0.5, impl="ref")
    torch.testing.assert_close(y, torch.tensor([[[[2.0, 8.0]]]]), atol=0, rtol=0)


def test_hand_identity_and_shift():
    x = torch.randn(2, 3, 5, 4)
    one = torch.ones(1, 1)
    torch.testing.assert_close(upfirdn2d(x, one, impl="ref"), x, atol=0, rtol=0)
    # True convolution with [0, 1] delays by one sample (y[i] = x[i-1]); a correlation would not.
    y = upfirdn2d(x, torch.tensor([[0.0, 1.0]]), pad=(1, 0, 0, 0), impl="ref")
    torch.testing.assert_close(y[..., 1:], x[..., :-1], atol=0, rtol=0)
    assert (y[..., 0] == 0).all()
    y = upfirdn2d(x, torch.tensor([[1.0, 0.0]]), pad=(1, 0, 0, 0), impl="ref")
    torch.testing.assert_close(y, x, atol=0, rtol=0)


# --- golden vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(golden_modules, name):
    entry = golden_modules[name]
    args, inputs = entry["args"], entry["inputs"]
    y = upfirdn2d(
        inputs["input"],
        inputs["kernel"],
        up=args["up"],
        down=args["down"],
        pad=tuple(args["pad"]),
        impl="ref",
    )
    want = entry["outputs"][0]
    assert y.shape == want.shape
    assert (y - want).abs().max().item() <= 1e-5


# --- reference properties ----------------------------------------------------------------------

GEOMETRIES = [
    dict(up=2, pad=(2, 1)),
    dict(pad=(1, 1)),
    dict(down=2, pad=(1, 1)),
    dict(up=2, pad=(1, 2)),
    dict(down=2, pad=(-1, 2)),
    dict(up=(2, 1), down=(1, 3), pad=(0, 3, -1, 2)),
    dict(up=3, down=2, pad=(2, -1, 1, 0)),
    dict(up=(1, 2), down=(2, 1), pad=(3, 3, 0, 1)),
]


@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_against_loop_oracle(geom):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    k = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(
        upfirdn2d(x, k, gain=1.5, impl="ref", **geom), naive(x, k, gain=1.5, **geom), atol=1e-12, rtol=0
    )


def test_cuda_window_arithmetic():
    """The index arithmetic of the CUDA kernel (emulated) agrees with the reference on random
    geometries, including crops larger than the kernel and factors above the kernel size."""
    gen = torch.Generator().manual_seed(9)

    def ints(lo, hi, m):
        return torch.randint(lo, hi + 1, (m,), generator=gen).tolist()

    done = 0
    while done < 40:
        up, down, pads, (kh, kw), (h, w) = (
            ints(1, 3, 2),
            ints(1, 3, 2),
            ints(-3, 4, 4),
            ints(1, 5, 2),
            ints(1, 6, 2),
        )
        g = U.make_geometry(tuple(up), tuple(down), tuple(pads))
        if (
            U.out_length(h, g.up_y, g.down_y, g.pad_y0, g.pad_y1, kh) < 1
            or U.out_length(w, g.up_x, g.down_x, g.pad_x0, g.pad_x1, kw) < 1
        ):
            continue
        x = torch.randn(1, 2, h, w, dtype=torch.float64, generator=gen)
        k = torch.randn(kh, kw, dtype=torch.float64, generator=gen)
        torch.testing.assert_close(gather_like_cuda(x, k, g), U._ref(x, k, g), atol=1e-12, rtol=0)
        done += 1


def test_sparse_dilated_kernel_equals_dilated_conv():
    torch.manual_seed(1)
    k3 = torch.randn(3, 3, dtype=torch.float64)
    k = torch.zeros(17, 17, dtype=torch.float64)
    k[::8, ::8] = k3  # a 3x3 kernel at dilation 8
    x = torch.randn(2, 3, 19, 21, dtype=torch.float64)
    y = upfirdn2d(x, k, pad=(8, 8), impl="ref")
    want = F.conv2d(x, k3.flip([0, 1]).expand(3, 1, 3, 3), padding=8, dilation=8, groups=3)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 7, 9), (3, 5, 13, 6)])
def test_layouts_agree(device, shape):
    torch.manual_seed(2)
    x = torch.randn(*shape, device=device)
    k = torch.randn(3, 4, device=device)
    kw = dict(up=2, down=(1, 2), pad=(2, 1, 3, 0), impl="ref")
    base = upfirdn2d(x, k, **kw)
    torch.testing.assert_close(upfirdn2d(x.to(memory_format=torch.channels_last), k, **kw), base)
    wide = torch.randn(shape[0], shape[1] * 2, shape[2], shape[3] * 2, device=device)
    wide[:, ::2, :, ::2] = x
    view = wide[:, ::2, :, ::2]  # non-contiguous view equal to x
    assert not view.is_contiguous() or x.numel() == 1
    torch.testing.assert_close(upfirdn2d(view, k, **kw), base)
    torch.testing.assert_close(upfirdn2d(x.transpose(2, 3).contiguous().transpose(2, 3), k, **kw), base)


def test_batch_is_independent():
    torch.manual_seed(3)
    x = torch.randn(3, 2, 6, 5)
    k = blur_kernel(4)
    full = upfirdn2d(x, k, up=2, pad=(2, 1), impl="ref")
    for i in range(3):
        torch.testing.assert_close(upfirdn2d(x[i : i + 1], k, up=2, pad=(2, 1), impl="ref"), full[i : i + 1])


def test_tuple_factors_match_separate_axes():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    col, row = torch.randn(3, 1, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    both = upfirdn2d(x, col @ row, up=(2, 1), down=(1, 2), pad=(2, 1, 0, 1), impl="ref")
    along_x = upfirdn2d(x, row, up=(2, 1), down=(1, 1), pad=(2, 1, 0, 0), impl="ref")
    sep = upfirdn2d(along_x, col, up=(1, 1), down=(1, 2), pad=(0, 0, 0, 1), impl="ref")
    torch.testing.assert_close(both, sep, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_agree_with_float64(dtype):
    torch.manual_seed(5)
    x = torch.rand(2, 3, 9, 8, dtype=torch.float64) * 2 - 1
    k = blur_kernel(4).double()
    want = upfirdn2d(x, k, up=2, pad=(2, 1), impl="ref")
    y = upfirdn2d(x.to(dtype), k, up=2, pad=(2, 1), impl="ref")
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), want, atol=TOLERANCE[dtype], rtol=0)


def test_gradient_function_matches_autograd_of_reference():
    """The autograd wrapper used by the CUDA path, run with the reference forward."""
    torch.manual_seed(6)
    for geom in GEOMETRIES:
        g = U.make_geometry(geom.get("up", 1), geom.get("down", 1), geom["pad"])
        x = torch.randn(2, 2, 5, 7, dtype=torch.float64, requires_grad=True)
        k = torch.randn(3, 4, dtype=torch.float64)
        y = U._Upfirdn2dFunction.apply(x, k, g, U._ref)
        torch.testing.assert_close(y, U._ref(x, k, g))
        gy = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, gy)
        (want,) = torch.autograd.grad(U._ref(x, k, g), x, gy)
        torch.testing.assert_close(gx, want, atol=1e-12, rtol=0)
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    g = U.make_geometry(2, (1, 2), (1, 2, 0, 1))
    k = torch.randn(2, 3, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda t: U._Upfirdn2dFunction.apply(t, k, g, U._ref), (x,))


def test_reference_gradients_for_kernel():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    k = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(x, t, up=2, pad=(1, 1)), (k,))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(up=0), "up"),
        (dict(down=(2,)), "down"),
        (dict(pad=(1, 2, 3)), "pad"),
        (dict(pad=(-5, -5)), "empty"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(3, 3), impl="ref", **kwargs)


def test_bad_tensors():
    with pytest.raises(ValueError, match="kernel"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(3), impl="ref")
    with pytest.raises(ValueError, match="floating"):
        upfirdn2d(torch.zeros(1, 1, 4, 4, dtype=torch.int64), torch.ones(3, 3), impl="ref")
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(3, 3), impl="fast")


def test_cuda_impl_on_cpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(3, 3), impl="cuda")


def test_empty_batch():
    y = upfirdn2d(torch.zeros(0, 3, 4, 4), torch.ones(3, 3), up=2, pad=(1, 1), impl="ref")
    assert y.shape == (0, 3, 8, 8)


# --- CUDA against the reference ----------------------------------------------------------------

CUDA_CASES = GEOMETRIES + [dict(up=2, down=2, pad=(0, 0))]


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("geom", CUDA_CASES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_cuda_matches_reference(dtype, geom, layout):
    torch.manual_seed(7)
    x = torch.rand(3, 5, 13, 11, device="cuda", dtype=torch.float64) * 2 - 1
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.rand(3, 10, 13, 22, device="cuda", dtype=torch.float64)[:, ::2, :, ::2]
    k = torch.rand(3, 4, device="cuda", dtype=torch.float64)
    want = upfirdn2d(x, k, gain=2.0, impl="ref", **geom)
    y = upfirdn2d(x.to(dtype), k, gain=2.0, impl="cuda", **geom)
    assert y.dtype == dtype and y.shape == want.shape
    torch.testing.assert_close(y.double(), want, atol=TOLERANCE[dtype] * 4, rtol=0)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("ksize", [1, 17, 96])  # 96x96 float32 does not fit the shared-memory copy
def test_cuda_kernel_sizes(ksize):
    torch.manual_seed(8)
    x = torch.randn(1, 2, 31, 17, device="cuda", dtype=torch.float64)
    k = torch.randn(ksize, ksize, device="cuda", dtype=torch.float64)
    pad = (ksize // 2, ksize - 1 - ksize // 2)
    for dtype in (torch.float64, torch.float32):
        want = upfirdn2d(x, k, up=2, pad=pad, impl="ref")
        y = upfirdn2d(x.to(dtype), k, up=2, pad=pad, impl="cuda")
        torch.testing.assert_close(y.double(), want, atol=1e-9 if dtype == torch.float64 else 1e-4, rtol=1e-5)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_golden_and_gradient(golden_modules):
    for name in GOLDEN:
        entry = golden_modules[name]
        args, inputs = entry["args"], entry["inputs"]
        y = upfirdn2d(
            inputs["input"].cuda(),
            inputs["kernel"].cuda(),
            up=args["up"],
            down=args["down"],
            pad=tuple(args["pad"]),
            impl="cuda",
        )
        assert (y.cpu() - entry["outputs"][0]).abs().max().item() <= 1e-5
    x = torch.randn(2, 3, 7, 9, device="cuda", dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, device="cuda", dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: upfirdn2d(t, k, up=2, down=(1, 2), pad=(1, 2), impl="cuda"), (x,)
    )
