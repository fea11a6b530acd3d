"""bias_act / fused_leaky_relu: hand-computed values, golden vectors, the activation table,
properties (dim, strides, dtypes, gradients); CUDA against the reference when present."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from kernels import ACTIVATIONS, bias_act, fused_leaky_relu, fused_leaky_relu_
from tests.conftest import TOLERANCE

B = sys.modules["kernels.bias_act"]
HAS_CUDA = torch.cuda.is_available()
S2 = math.sqrt(2.0)


# --- hand-computed values ----------------------------------------------------------------------


def test_hand_lrelu_bias_gain_clamp():
    x = torch.tensor([[-1.0, 0.0, 2.0], [0.5, -3.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64)
    # x + b = [[-0.5, 1, 1], [1, -2, 0]] -> lrelu 0.2 -> * sqrt(2)
    want = torch.tensor([[-0.1 * S2, S2, S2], [S2, -0.4 * S2, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(bias_act(x, b, act="lrelu", impl="ref"), want, atol=1e-15, rtol=0)
    torch.testing.assert_close(fused_leaky_relu(x, b, impl="ref"), want, atol=1e-15, rtol=0)
    clamped = torch.tensor([[-0.1 * S2, 1.0, 1.0], [1.0, -0.4 * S2, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(
        bias_act(x, b, act="lrelu", clamp=1.0, impl="ref"), clamped, atol=1e-15, rtol=0
    )
    slope = torch.tensor([[-0.25, 1.0, 1.0], [1.0, -1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(fused_leaky_relu(x, b, negative_slope=0.5, scale=1.0, impl="ref"), slope)


def test_hand_other_activations():
    x = torch.tensor([[-1.0, 0.0, 2.0], [0.5, -3.0, 1.0]])
    # bias along dim 0: x + b = [[0, 1, 3], [-0.5, -4, 0]]
    relu = bias_act(x, torch.tensor([1.0, -1.0]), dim=0, act="relu", gain=1.0, impl="ref")
    torch.testing.assert_close(relu, torch.tensor([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]), atol=0, rtol=0)
    torch.testing.assert_close(
        bias_act(torch.tensor([0.0, 10.0]), act="tanh", gain=2.0, clamp=1.5, impl="ref"),
        torch.tensor([0.0, 1.5]),
        atol=0,
        rtol=0,
    )
    torch.testing.assert_close(bias_act(torch.tensor([0.0]), act="sigmoid", impl="ref"), torch.tensor([0.5]))
    torch.testing.assert_close(bias_act(x, gain=3.0, impl="ref"), 3 * x)
    torch.testing.assert_close(bias_act(x, impl="ref"), x, atol=0, rtol=0)


def test_table_defaults():
    assert ACTIVATIONS["lrelu"].alpha == 0.2 and ACTIVATIONS["lrelu"].gain == pytest.approx(S2)
    assert ACTIVATIONS["linear"].gain == 1.0 and ACTIVATIONS["linear"].alpha is None
    assert {"linear", "relu", "lrelu", "tanh", "sigmoid"} <= set(ACTIVATIONS)
    assert len({a.code for a in ACTIVATIONS.values()}) == len(ACTIVATIONS)


FORMULAS = {  # act -> (alpha, gain, elementwise formula of x + b); written independently of the table
    "linear": (None, 1.0, lambda v: v),
    "relu": (None, S2, lambda v: max(v, 0.0)),
    "lrelu": (0.2, S2, lambda v: v if v > 0 else 0.2 * v),
    "tanh": (None, 1.0, math.tanh),
    "sigmoid": (None, 1.0, lambda v: 1 / (1 + math.exp(-v))),
    "elu": (1.0, 1.0, lambda v: v if v > 0 else math.expm1(v)),
    "selu": (None, 1.0, lambda v: 1.0507009873554805 * (v if v > 0 else 1.6732632423543772 * math.expm1(v))),
    "softplus": (None, 1.0, lambda v: math.log1p(math.exp(v))),
    "swish": (None, S2, lambda v: v / (1 + math.exp(-v))),
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_every_activation_against_formula(act):
    alpha, gain, f = FORMULAS[act]
    spec = ACTIVATIONS[act]
    assert (spec.alpha, spec.gain) == (alpha, pytest.approx(gain))
    x = torch.linspace(-4, 4, 17, dtype=torch.float64).reshape(1, 17)
    b = torch.tensor([0.3], dtype=torch.float64)
    y = bias_act(x.T, b, act=act, impl="ref")  # [17, 1]: bias along dim 1 of length 1
    want = torch.tensor([[gain * f(v + 0.3)] for v in x[0].tolist()], dtype=torch.float64)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=0)


# --- golden vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fused_leaky_relu_4d", "fused_leaky_relu_2d"])
def test_golden(golden_modules, name):
    entry = golden_modules[name]
    args = entry["args"]
    x, bias = entry["inputs"]["input"], entry["inputs"]["bias"]
    want = entry["outputs"][0]
    for y in (
        fused_leaky_relu(x, bias, impl="ref"),
        fused_leaky_relu(x, bias, args["negative_slope"], args["scale"], impl="ref"),
        bias_act(x, bias, act="lrelu", impl="ref"),
    ):
        assert y.shape == want.shape
        assert (y - want).abs().max().item() <= 1e-5


# --- reference properties ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (1, 5, 3, 7), (2, 3, 1, 9, 2)])
def test_layouts_and_dims_agree(device, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, device=device)
    for dim in range(-len(shape), len(shape)):
        b = torch.randn(shape[dim], device=device)
        want = bias_act(x, b, dim=dim, act="lrelu", clamp=1.0, impl="ref")
        moved = x.movedim(dim, -1)  # bias along the last dim of a permuted view: same values
        y = bias_act(moved, b, dim=-1, act="lrelu", clamp=1.0, impl="ref").movedim(-1, dim)
        torch.testing.assert_close(y, want)
    if len(shape) == 4:
        b = torch.randn(shape[1], device=device)
        want = bias_act(x, b, act="swish", impl="ref")
        torch.testing.assert_close(
            bias_act(x.to(memory_format=torch.channels_last), b, act="swish", impl="ref"), want
        )
        wide = torch.randn(shape[0], shape[1], shape[2], shape[3] * 2, device=device)
        wide[..., ::2] = x
        torch.testing.assert_close(bias_act(wide[..., ::2], b, act="swish", impl="ref"), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["lrelu", "tanh", "softplus"])
def test_dtypes_agree_with_float64(dtype, act):
    torch.manual_seed(1)
    x = torch.rand(2, 5, 3, 4, dtype=torch.float64) * 2 - 1
    b = torch.rand(5, dtype=torch.float64) - 0.5
    want = bias_act(x, b, act=act, impl="ref")
    y = bias_act(x.to(dtype), b, act=act, impl="ref")
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), want, atol=TOLERANCE[dtype] * 2, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
def test_in_place_variant_equals_the_op(dtype, with_bias):
    x = torch.randn(2, 5, 7, 6, dtype=dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(5) if with_bias else None
    want = fused_leaky_relu(x, b)
    work = x.clone()
    with torch.no_grad():
        got = fused_leaky_relu_(work, b)
    # float32 on a CPU: no new memory; bf16 goes out of place (faster there)
    assert (got.data_ptr() == work.data_ptr()) == (dtype == torch.float32)
    assert torch.equal(got, want)                               # same operations, same bits


def test_in_place_variant_leaves_tracked_tensors_alone():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    got = fused_leaky_relu_(x, b)
    assert got.data_ptr() != x.data_ptr()
    got.sum().backward()
    assert x.grad is not None and b.grad is not None


def test_gradient_function_matches_autograd_of_reference():
    """The autograd wrapper used by the CUDA path, run with the reference forward."""
    torch.manual_seed(2)
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for act in ACTIVATIONS:
        s = B.resolve(x, b, 1, act, None, None, 0.9)
        y = B._BiasActFunction.apply(x, b, s, B._ref)
        gy = torch.randn_like(y)
        got = torch.autograd.grad(y, (x, b), gy)
        want = torch.autograd.grad(B._ref(x, b, s), (x, b), gy)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
    s = B.resolve(x, None, 1, "lrelu", None, None, None)
    (gx,) = torch.autograd.grad(B._BiasActFunction.apply(x, None, s, B._ref).sum(), x)
    torch.testing.assert_close(gx, torch.where(x > 0, S2, 0.2 * S2).double())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(act="gelu"), "unknown activation"),
        (dict(act="relu", alpha=0.1), "no alpha"),
        (dict(clamp=-1.0), "clamp"),
        (dict(b=torch.zeros(4)), "shape"),
        (dict(b=torch.zeros(3), dim=5), "dim"),
        (dict(impl="fast"), "impl"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bias_act(torch.zeros(2, 3), **{"impl": "ref", **kwargs})


def test_cuda_impl_on_cpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        fused_leaky_relu(torch.zeros(2, 3), torch.zeros(3), impl="cuda")


# --- CUDA against the reference ----------------------------------------------------------------


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 9, 13), (1, 3, 1, 1)])
def test_cuda_matches_reference(dtype, act, shape):
    torch.manual_seed(3)
    x = torch.randn(*shape, device="cuda", dtype=torch.float64) * 2
    b = torch.randn(shape[1], device="cuda", dtype=torch.float64)
    for xin in (x, x.transpose(0, -1).contiguous().transpose(0, -1)):  # contiguous and strided
        want = bias_act(xin.to(dtype), b.to(dtype), act=act, clamp=2.5, impl="ref").double()
        y = bias_act(xin.to(dtype), b.to(dtype), act=act, clamp=2.5, impl="cuda")
        assert y.dtype == dtype and y.shape == x.shape
        torch.testing.assert_close(y.double(), want, atol=TOLERANCE[dtype] * 4, rtol=TOLERANCE[dtype])
    y = bias_act(x.to(dtype), None, act=act, impl="cuda")
    torch.testing.assert_close(
        y.double(),
        bias_act(x.to(dtype), act=act, impl="ref").double(),
        atol=TOLERANCE[dtype] * 4,
        rtol=TOLERANCE[dtype],
    )


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_golden_and_gradient(golden_modules):
    for name in ("fused_leaky_relu_4d", "fused_leaky_relu_2d"):
        entry = golden_modules[name]
        y = fused_leaky_relu(entry["inputs"]["input"].cuda(), entry["inputs"]["bias"].cuda(), impl="cuda")
        assert (y.cpu() - entry["outputs"][0]).abs().max().item() <= 1e-5
    x = torch.randn(2, 4, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, u: bias_act(t, u, act="swish", clamp=1.0, impl="cuda"), (x, b))
