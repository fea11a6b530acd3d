// bias_act CUDA kernel: element-wise, grid-stride loop, math from bias_act_math.h.
#include "bias_act.h"
#include "bias_act_math.h"

namespace facestyle {
namespace {

constexpr int kThreads = 256;

template <typename T, typename A>
__global__ void bias_act_kernel(const T* x, const T* bias, T* y, const BiasActParams p) {
    const A alpha = static_cast<A>(p.alpha);
    const A gain = static_cast<A>(p.gain);
    const A clamp = static_cast<A>(p.clamp);
    const int64_t step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
        const A b = bias != nullptr ? to_acc(bias[(i / p.inner) % p.bias_len]) : A(0);
        y[i] = from_acc<T>(bias_act_value<A>(to_acc(x[i]), b, p.act, alpha, gain, clamp));
    }
}

}  // namespace

template <typename T>
cudaError_t bias_act_launch(const T* x, const T* bias, T* y, const BiasActParams& p, cudaStream_t stream) {
    using A = typename AccType<T>::type;
    if (p.numel <= 0) return cudaSuccess;
    bias_act_kernel<T, A><<<grid_for(p.numel, kThreads), kThreads, 0, stream>>>(x, bias, y, p);
    return cudaGetLastError();
}

template cudaError_t bias_act_launch<float>(const float*, const float*, float*, const BiasActParams&,
                                            cudaStream_t);
template cudaError_t bias_act_launch<double>(const double*, const double*, double*, const BiasActParams&,
                                             cudaStream_t);
template cudaError_t bias_act_launch<__half>(const __half*, const __half*, __half*, const BiasActParams&,
                                             cudaStream_t);
template cudaError_t bias_act_launch<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*,
                                                    const BiasActParams&, cudaStream_t);

}  // namespace facestyle
