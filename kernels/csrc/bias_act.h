// bias_act launcher: raw pointers only, no torch headers (see kernels/bias_act.py).
#pragma once

#include <stdint.h>

#include "cuda_types.h"

namespace facestyle {

// x and y are contiguous with `numel` elements; the bias (length `bias_len`, or nullptr for none)
// runs along one dimension: element i uses bias[(i / inner) % bias_len], where `inner` is the
// product of the sizes after that dimension.
struct BiasActParams {
    int64_t numel;
    int64_t bias_len;
    int64_t inner;
    int act;       // facestyle::ActCode (bias_act_math.h)
    double alpha;  // lrelu slope / elu scale
    double gain;
    double clamp;  // < 0: no clamp
};

// Launches y = clamp(act(x + bias) * gain) on `stream`; x and y may alias.
// Returns the launch status (cudaGetLastError()).
template <typename T>
cudaError_t bias_act_launch(const T* x, const T* bias, T* y, const BiasActParams& p, cudaStream_t stream);

}  // namespace facestyle
