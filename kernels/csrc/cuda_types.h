// Storage and accumulation types shared by the CUDA kernels (no torch headers).
//
// Every storage type T has an accumulation type AccType<T>::type: double for double, float for
// float, __half and __nv_bfloat16. Kernels load with to_acc() and store with from_acc<T>().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

namespace facestyle {

template <typename T>
struct AccType {
    using type = float;
};
template <>
struct AccType<double> {
    using type = double;
};

#if defined(__CUDACC__)
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(typename AccType<T>::type v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Grid size for a grid-stride loop over `total` items with `threads` per block.
inline unsigned int grid_for(int64_t total, int threads) {
    const int64_t max_blocks = int64_t(1) << 20;
    int64_t blocks = (total + threads - 1) / threads;
    if (blocks > max_blocks) blocks = max_blocks;
    if (blocks < 1) blocks = 1;
    return static_cast<unsigned int>(blocks);
}
#endif

}  // namespace facestyle
