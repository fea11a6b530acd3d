// upfirdn2d launcher: raw pointers only, no torch headers (see kernels/upfirdn2d.py, spec 7.1).
#pragma once

#include <stdint.h>

#include "cuda_types.h"

namespace facestyle {

// Sizes and strides of one call. Strides are in elements, so any NCHW-indexable layout works
// (contiguous, channels_last, sliced); the output is always contiguous NCHW.
struct Upfirdn2dParams {
    int64_t batch, channels, in_h, in_w;              // x: [batch, channels, in_h, in_w]
    int64_t stride_n, stride_c, stride_h, stride_w;   // strides of x, in elements
    int64_t out_h, out_w;                             // y: [batch, channels, out_h, out_w]
    int up_x, up_y, down_x, down_y;                   // >= 1
    int pad_x0, pad_x1, pad_y0, pad_y1;               // negative values crop
    int kernel_h, kernel_w;                           // kernel: [kernel_h, kernel_w], row-major
};

// Output length along one axis: (n*up + pad0 + pad1 - k) / down + 1 (floor division);
// a value < 1 means the call is invalid.
inline int64_t upfirdn2d_out_size(int64_t n, int up, int down, int pad0, int pad1, int k) {
    const int64_t span = n * up + pad0 + pad1 - k;
    if (span < 0) return 0;
    return span / down + 1;
}

// Launches the kernel on `stream`. `kernel` is in the accumulation type (float, or double for
// double) and already holds the gain. Returns the launch status (cudaGetLastError()).
template <typename T>
cudaError_t upfirdn2d_launch(const T* x, const typename AccType<T>::type* kernel, T* y,
                             const Upfirdn2dParams& p, cudaStream_t stream);

// cudaSuccess when the current device can run the kernels of this build (an image for its
// architecture is present); cudaErrorInvalidDeviceFunction (or similar) otherwise.
cudaError_t upfirdn2d_probe();

}  // namespace facestyle
