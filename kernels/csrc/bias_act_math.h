// Element-wise math of bias_act, shared by the CUDA kernel and by host code.
//
// Only <math.h> is needed, so g++ compiles this header for the CPU (the Python tests do that and
// compare against the PyTorch reference). Under nvcc every function is __host__ __device__.
//
// The activation codes below must equal the `code` column of ACTIVATIONS in kernels/bias_act.py
// (a test parses this file to check it).
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define FS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FS_HOST_DEVICE inline
#endif

namespace facestyle {

enum ActCode : int {
    kActLinear = 0,
    kActRelu = 1,
    kActLrelu = 2,
    kActTanh = 3,
    kActSigmoid = 4,
    kActElu = 5,
    kActSelu = 6,
    kActSoftplus = 7,
    kActSwish = 8,
};

// Overloads pick the float or double libm function on both host and device.
FS_HOST_DEVICE float fs_exp(float v) { return expf(v); }
FS_HOST_DEVICE double fs_exp(double v) { return exp(v); }
FS_HOST_DEVICE float fs_expm1(float v) { return expm1f(v); }
FS_HOST_DEVICE double fs_expm1(double v) { return expm1(v); }
FS_HOST_DEVICE float fs_log1p(float v) { return log1pf(v); }
FS_HOST_DEVICE double fs_log1p(double v) { return log1p(v); }
FS_HOST_DEVICE float fs_tanh(float v) { return tanhf(v); }
FS_HOST_DEVICE double fs_tanh(double v) { return tanh(v); }

// act(v) for one activation code; `alpha` is used by lrelu (slope) and elu (scale of the
// negative branch) only. Unknown codes behave as linear.
template <typename A>
FS_HOST_DEVICE A activate(A v, int act, A alpha) {
    const A zero = A(0);
    const A one = A(1);
    switch (act) {
        case kActRelu:
            return v > zero ? v : zero;
        case kActLrelu:
            return v > zero ? v : v * alpha;
        case kActTanh:
            return fs_tanh(v);
        case kActSigmoid:
            return one / (one + fs_exp(-v));
        case kActElu:
            return v > zero ? v : alpha * fs_expm1(v);
        case kActSelu: {
            const A scale = A(1.0507009873554804934193349852946);
            const A neg = A(1.6732632423543772848170429916717);
            return v > zero ? scale * v : scale * neg * fs_expm1(v);
        }
        case kActSoftplus:
            // Same threshold as torch.nn.functional.softplus (beta 1, threshold 20).
            return v > A(20) ? v : fs_log1p(fs_exp(v));
        case kActSwish:
            return v / (one + fs_exp(-v));
        case kActLinear:
        default:
            return v;
    }
}

// One output value: 1. v = x + b, 2. v = act(v), 3. v *= gain, 4. clamp to [-clamp, clamp] when
// clamp >= 0 (a negative clamp means "no clamp").
template <typename A>
FS_HOST_DEVICE A bias_act_value(A x, A b, int act, A alpha, A gain, A clamp) {
    A v = activate<A>(x + b, act, alpha) * gain;
    if (clamp >= A(0)) {
        v = v > clamp ? clamp : v;
        v = v < -clamp ? -clamp : v;
    }
    return v;
}

}  // namespace facestyle
