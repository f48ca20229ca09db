// The scalar lane set: one element per "vector". Used by the portable CPU path, by the CUDA
// kernels (one thread = one Philox block) and by host-side reference helpers. The SIMD lane
// sets in kernel_cpu.hpp provide the same members for GCC vector types.
#pragma once

#include <cmath>
#include <cstring>

#include "fastinit/config.hpp"

FASTINIT_KERNEL_NS_BEGIN

struct ScalarLanes {
  static constexpr int W = 1;
  using U32 = uint32_t;
  using I32 = int32_t;
  using F32 = float;
  using U64 = uint64_t;
  using I64 = int64_t;
  using F64 = double;
  using U16 = uint16_t;

  static FASTINIT_HD void mulhilo(uint32_t m, U32 x, U32& hi, U32& lo) {
    const uint64_t p = static_cast<uint64_t>(m) * static_cast<uint64_t>(x);
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
  }
  static FASTINIT_HD I32 as_i32(U32 x) { return static_cast<I32>(x); }
  static FASTINIT_HD I64 as_i64(U64 x) { return static_cast<I64>(x); }
  static FASTINIT_HD F32 cvt_f32(I32 x) { return static_cast<F32>(x); }
  static FASTINIT_HD F64 cvt_f64(I64 x) { return static_cast<F64>(x); }
  static FASTINIT_HD U64 widen(U32 x) { return static_cast<U64>(x); }
  static FASTINIT_HD U16 narrow16(U32 x) { return static_cast<U16>(x); }
  static FASTINIT_HD U32 bits(F32 x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    U32 u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
  }
  static FASTINIT_HD F32 from_bits(U32 u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    F32 x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
  }
  static FASTINIT_HD U64 bits(F64 x) {
#if defined(__CUDA_ARCH__)
    return static_cast<U64>(__double_as_longlong(x));
#else
    U64 u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
  }
  static FASTINIT_HD F64 from_bits(U64 u) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double(static_cast<long long>(u));
#else
    F64 x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
  }
  // IEEE square root is correctly rounded on every path (SSE, AVX, CUDA's __fsqrt_rn).
  static FASTINIT_HD F32 sqrt(F32 x) {
#if defined(__CUDA_ARCH__)
    return __fsqrt_rn(x);
#else
    return std::sqrt(x);
#endif
  }
  static FASTINIT_HD F64 sqrt(F64 x) {
#if defined(__CUDA_ARCH__)
    return __dsqrt_rn(x);
#else
    return std::sqrt(x);
#endif
  }
  static FASTINIT_HD F32 splat(float c) { return c; }
  static FASTINIT_HD F64 splat(double c) { return c; }
  // Fused multiply-add, correctly rounded on every path (hardware FMA or libm's fma).
  static FASTINIT_HD F32 fma(F32 a, F32 b, F32 c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
  }
  static FASTINIT_HD F64 fma(F64 a, F64 b, F64 c) {
#if defined(__CUDA_ARCH__)
    return __fma_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
  }
  template <class M, class T>
  static FASTINIT_HD T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  static FASTINIT_HD bool all(bool mask) { return mask; }
};

FASTINIT_KERNEL_NS_END
