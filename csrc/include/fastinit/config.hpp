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
// Host-only code that must be inlined whatever GCC's heuristics say (the AVX2 lane pairs).
#define FASTINIT_ALWAYS_INLINE inline __attribute__((always_inline))

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

// Functions of libfastinit_core that take pybind11 types. pybind11 gives its namespace hidden
// visibility, and GCC would hide any function with such a parameter from the other modules.
#define FASTINIT_CORE_API __attribute__((visibility("default")))
