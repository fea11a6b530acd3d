// Torch binding of the facestyle CUDA kernels: argument checks, device guard, dtype dispatch and
// launch on the current CUDA stream. The kernels themselves live in the .cu files and take raw
// pointers only. Python callers: kernels/upfirdn2d.py and kernels/bias_act.py (via kernels/_build.py).
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <climits>
#include <optional>

#include "bias_act.h"
#include "bias_act_math.h"
#include "upfirdn2d.h"

namespace {

// at::Half / at::BFloat16 share their bit layout with the CUDA types the kernels are written for.
template <typename T>
struct CudaType {
    using type = T;
};
template <>
struct CudaType<at::Half> {
    using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
    using type = __nv_bfloat16;
};

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

int to_int(int64_t v, const char* what) {
    TORCH_CHECK(v >= INT_MIN && v <= INT_MAX, what, " out of int range: ", v);
    return static_cast<int>(v);
}

void check_launch(cudaError_t err, const char* op) {
    TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

// y = upfirdn2d(x, kernel), see kernels/upfirdn2d.py. x: [N, C, H, W] floating (any strides),
// kernel: [kh, kw] in the accumulation dtype (float32, or float64 for float64 x), gain applied.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& kernel, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
    TORCH_CHECK(kernel.device() == x.device(), "upfirdn2d: kernel must be on ", x.device(), ", got ",
                kernel.device());
    TORCH_CHECK(kernel.dim() == 2 && kernel.size(0) >= 1 && kernel.size(1) >= 1,
                "upfirdn2d: kernel must be a non-empty 2-D tensor, got sizes ", kernel.sizes());
    TORCH_CHECK(kernel.scalar_type() == acc_dtype(x.scalar_type()), "upfirdn2d: kernel must be ",
                acc_dtype(x.scalar_type()), " for x of dtype ", x.scalar_type(), ", got ", kernel.scalar_type());
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");

    const c10::cuda::CUDAGuard guard(x.device());
    facestyle::Upfirdn2dParams p{};
    p.batch = x.size(0);
    p.channels = x.size(1);
    p.in_h = x.size(2);
    p.in_w = x.size(3);
    p.stride_n = x.stride(0);
    p.stride_c = x.stride(1);
    p.stride_h = x.stride(2);
    p.stride_w = x.stride(3);
    p.up_x = to_int(up_x, "up_x");
    p.up_y = to_int(up_y, "up_y");
    p.down_x = to_int(down_x, "down_x");
    p.down_y = to_int(down_y, "down_y");
    p.pad_x0 = to_int(pad_x0, "pad_x0");
    p.pad_x1 = to_int(pad_x1, "pad_x1");
    p.pad_y0 = to_int(pad_y0, "pad_y0");
    p.pad_y1 = to_int(pad_y1, "pad_y1");
    p.kernel_h = to_int(kernel.size(0), "kernel height");
    p.kernel_w = to_int(kernel.size(1), "kernel width");
    p.out_h = facestyle::upfirdn2d_out_size(p.in_h, p.up_y, p.down_y, p.pad_y0, p.pad_y1, p.kernel_h);
    p.out_w = facestyle::upfirdn2d_out_size(p.in_w, p.up_x, p.down_x, p.pad_x0, p.pad_x1, p.kernel_w);
    TORCH_CHECK(p.out_h >= 1 && p.out_w >= 1, "upfirdn2d: empty output for input ", x.sizes(), " and kernel ",
                kernel.sizes());

    at::Tensor y = at::empty({p.batch, p.channels, p.out_h, p.out_w}, x.options());
    if (y.numel() == 0) return y;
    const at::Tensor k = kernel.contiguous();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        using T = typename CudaType<scalar_t>::type;
        using A = typename facestyle::AccType<T>::type;
        check_launch(facestyle::upfirdn2d_launch<T>(reinterpret_cast<const T*>(x.const_data_ptr<scalar_t>()),
                                                    k.const_data_ptr<A>(),
                                                    reinterpret_cast<T*>(y.mutable_data_ptr<scalar_t>()), p, stream),
                     "upfirdn2d");
    });
    return y;
}

// y = clamp(act(x + bias) * gain), see kernels/bias_act.py. x: any shape, floating; bias: 1-D of
// length x.size(dim) and x's dtype, or None. clamp < 0 means no clamp. Output is contiguous.
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& bias, int64_t dim, int64_t act,
                    double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(act >= facestyle::kActLinear && act <= facestyle::kActSwish, "bias_act: unknown activation code ",
                act);
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous();
    int64_t bias_len = 1;
    int64_t inner = 1;
    at::Tensor bc;
    if (bias.has_value() && bias->defined()) {
        TORCH_CHECK(x.dim() >= 1, "bias_act: x must have at least one dimension when a bias is given");
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for ", x.dim(), "-D x");
        TORCH_CHECK(bias->device() == x.device(), "bias_act: bias must be on ", x.device());
        TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "bias_act: bias dtype ", bias->scalar_type(),
                    " differs from x dtype ", x.scalar_type());
        TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(dim), "bias_act: bias must have shape [",
                    x.size(dim), "], got ", bias->sizes());
        bc = bias->contiguous();
        bias_len = x.size(dim);
        for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
    }

    at::Tensor y = at::empty_like(xc);
    if (y.numel() == 0) return y;
    facestyle::BiasActParams p{};
    p.numel = xc.numel();
    p.bias_len = bias_len;
    p.inner = inner > 0 ? inner : 1;
    p.act = static_cast<int>(act);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
        using T = typename CudaType<scalar_t>::type;
        const T* b = bc.defined() ? reinterpret_cast<const T*>(bc.const_data_ptr<scalar_t>()) : nullptr;
        check_launch(facestyle::bias_act_launch<T>(reinterpret_cast<const T*>(xc.const_data_ptr<scalar_t>()), b,
                                                   reinterpret_cast<T*>(y.mutable_data_ptr<scalar_t>()), p, stream),
                     "bias_act");
    });
    return y;
}

// Raises when the current CUDA device has no kernel image in this build (wrong architecture).
void probe() {
    const cudaError_t err = facestyle::upfirdn2d_probe();
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // clear the error so later launches are not blamed for it
        TORCH_CHECK(false, "facestyle kernels cannot run on this device: ", cudaGetErrorString(err));
    }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "facestyle CUDA kernels (upfirdn2d, bias_act); use kernels.upfirdn2d / kernels.bias_act";
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d forward (CUDA)", py::arg("x"), py::arg("kernel"), py::arg("up_x"),
          py::arg("up_y"), py::arg("down_x"), py::arg("down_y"), py::arg("pad_x0"), py::arg("pad_x1"),
          py::arg("pad_y0"), py::arg("pad_y1"));
    m.def("bias_act", &bias_act, "bias_act forward (CUDA)", py::arg("x"), py::arg("bias"), py::arg("dim"),
          py::arg("act"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
    m.def("probe", &probe, "raise unless the current device can run these kernels");
}
