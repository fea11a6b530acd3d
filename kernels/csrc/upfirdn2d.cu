// upfirdn2d CUDA kernel: general up / down / pad / kernel size, one thread per output sample.
//
// Along one axis (spec 7.1), with the zero-stuffed and padded input P and the kernel k of length K:
//     y[o] = sum_{a=0}^{K-1} P[o*down + a] * k[K-1-a]          (true convolution, valid part)
// and P[j] is non-zero only where j - pad0 = i*up for an input index i. So the loop runs over the
// input samples i that fall inside the window, never over the inserted zeros:
//     a = i*up - (o*down - pad0),  0 <= a < K,  tap k[K-1-a].
#include "upfirdn2d.h"

namespace facestyle {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxSharedKernelBytes = 32 * 1024;

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

__device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

template <typename T, typename A>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const A* __restrict__ kernel, T* __restrict__ y,
                                 const Upfirdn2dParams p, const bool kernel_in_shared) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t taps = int64_t(p.kernel_h) * p.kernel_w;
    const A* k = kernel;
    if (kernel_in_shared) {
        A* ks = reinterpret_cast<A*>(smem);
        for (int64_t i = threadIdx.x; i < taps; i += blockDim.x) ks[i] = kernel[i];
        __syncthreads();
        k = ks;
    }

    const int64_t total = p.batch * p.channels * p.out_h * p.out_w;
    const int64_t step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
        // idx -> (n, c, oy, ox) of the contiguous NCHW output.
        const int64_t ox = idx % p.out_w;
        int64_t rest = idx / p.out_w;
        const int64_t oy = rest % p.out_h;
        rest /= p.out_h;
        const int64_t c = rest % p.channels;
        const int64_t n = rest / p.channels;

        // Window start in the zero-stuffed (unpadded) coordinates, and the input samples inside it.
        const int64_t wy = oy * p.down_y - p.pad_y0;
        const int64_t wx = ox * p.down_x - p.pad_x0;
        int64_t iy0 = ceil_div(wy, p.up_y);
        int64_t iy1 = floor_div(wy + p.kernel_h - 1, p.up_y);
        int64_t ix0 = ceil_div(wx, p.up_x);
        int64_t ix1 = floor_div(wx + p.kernel_w - 1, p.up_x);
        iy0 = iy0 < 0 ? 0 : iy0;
        ix0 = ix0 < 0 ? 0 : ix0;
        iy1 = iy1 > p.in_h - 1 ? p.in_h - 1 : iy1;
        ix1 = ix1 > p.in_w - 1 ? p.in_w - 1 : ix1;

        const T* plane = x + n * p.stride_n + c * p.stride_c;
        A acc = A(0);
        for (int64_t iy = iy0; iy <= iy1; ++iy) {
            const int64_t ay = iy * p.up_y - wy;                     // 0 <= ay < kernel_h
            const A* krow = k + (p.kernel_h - 1 - ay) * p.kernel_w;  // flipped row
            const T* xrow = plane + iy * p.stride_h;
            for (int64_t ix = ix0; ix <= ix1; ++ix) {
                const int64_t ax = ix * p.up_x - wx;                 // 0 <= ax < kernel_w
                acc += to_acc(xrow[ix * p.stride_w]) * krow[p.kernel_w - 1 - ax];
            }
        }
        y[idx] = from_acc<T>(acc);
    }
}

}  // namespace

template <typename T>
cudaError_t upfirdn2d_launch(const T* x, const typename AccType<T>::type* kernel, T* y,
                             const Upfirdn2dParams& p, cudaStream_t stream) {
    using A = typename AccType<T>::type;
    const int64_t total = p.batch * p.channels * p.out_h * p.out_w;
    if (total <= 0) return cudaSuccess;
    const int64_t kernel_bytes = int64_t(p.kernel_h) * p.kernel_w * int64_t(sizeof(A));
    const bool in_shared = kernel_bytes <= kMaxSharedKernelBytes;
    const size_t smem = in_shared ? static_cast<size_t>(kernel_bytes) : 0;
    upfirdn2d_kernel<T, A><<<grid_for(total, kThreads), kThreads, smem, stream>>>(x, kernel, y, p, in_shared);
    return cudaGetLastError();
}

cudaError_t upfirdn2d_probe() {
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(&attr, upfirdn2d_kernel<float, float>);
}

template cudaError_t upfirdn2d_launch<float>(const float*, const float*, float*, const Upfirdn2dParams&,
                                             cudaStream_t);
template cudaError_t upfirdn2d_launch<double>(const double*, const double*, double*, const Upfirdn2dParams&,
                                              cudaStream_t);
template cudaError_t upfirdn2d_launch<__half>(const __half*, const float*, __half*, const Upfirdn2dParams&,
                                              cudaStream_t);
template cudaError_t upfirdn2d_launch<__nv_bfloat16>(const __nv_bfloat16*, const float*, __nv_bfloat16*,
                                                     const Upfirdn2dParams&, cudaStream_t);

}  // namespace facestyle
