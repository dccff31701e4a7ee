// Lets the CUDA source of core/ops/softsplat_cupy.py compile as plain C++ on the CPU, for the tests:
//     g++ -O2 -shared -fPIC -include cuda_cpu_shim.h -x c++ splat.cu -o splat.so
// Each kernel becomes an ordinary extern "C" function. The launch geometry is one block of one thread
// (blockIdx = threadIdx = 0, blockDim = gridDim = 1), so every grid-stride loop visits all of its items in
// order, and atomicAdd is a plain add (there is one thread). isfinite and floor come from <cmath>.
#pragma once
#include <cmath>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// __restrict__ is understood by g++ and clang as it is

struct cuda_cpu_shim_dim3 {
    unsigned int x, y, z;
};
static const cuda_cpu_shim_dim3 blockIdx = {0, 0, 0};
static const cuda_cpu_shim_dim3 threadIdx = {0, 0, 0};
static const cuda_cpu_shim_dim3 blockDim = {1, 1, 1};
static const cuda_cpu_shim_dim3 gridDim = {1, 1, 1};

template <typename T>
inline T atomicAdd(T* address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}

using std::floor;
using std::isfinite;
