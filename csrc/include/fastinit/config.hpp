// Portability macros shared by the host (CPU) and device (CUDA) builds.
#pragma once

#include <cstdint>

// FASTINIT_HD marks a function compiled for both host and device, the way Random123 marks its
// generators: one source, so the CPU and the GPU run literally the same arithmetic.
#if defined(__CUDACC__)
#define FASTINIT_HD __host__ __device__ __forceinline__
#else
#define FASTINIT_HD inline __attribute__((always_inline))
#endif

// Kernel headers are compiled several times with different instruction-set flags (scalar,
// AVX2, AVX-512) and linked into one module. Giving everything in them internal linkage
// (an unnamed namespace) keeps the linker from merging an AVX-512 copy of an inline function
// into the scalar path, which would crash on CPUs without AVX-512.
#define FASTINIT_KERNEL_NS_BEGIN \
  namespace fastinit {           \
  namespace {
#define FASTINIT_KERNEL_NS_END \
  }                            \
  }
