// Lets a host C++ compiler read src/gpu/kernels.cu (tests/cuda_kernels.rs): the CUDA qualifiers
// become nothing and the thread coordinates become globals. The kernels share no memory and
// never synchronise, so they mean the same thing run one thread at a time.
#include <math.h>

#define __global__
#define __device__

struct Dim3 {
    unsigned x, y, z;
};
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
