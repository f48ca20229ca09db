// The Arm (aarch64) lane sets: AdvSIMD ("NEON"), which every aarch64 CPU has, over GCC vector
// types of 128 bits. Arithmetic, comparisons and ?: come from the compiler; the operations it
// cannot express portably (fused multiply-add, square root, the 32x32->64 multiply, mask
// reductions) use arm_neon.h. Every operation is a correctly rounded IEEE operation or exact
// integer arithmetic, as on the x86 sets, so the bits equal the scalar path's
// (tests/native/kernel_equality.cpp checks this under qemu; Arm speed is unmeasured).
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstring>

#include "fastinit/config.hpp"

FASTINIT_KERNEL_NS_BEGIN

// float32 lanes: 4 Philox blocks per step (one 128-bit register per counter word).
struct NeonLanes {
  static constexpr int W = 4;
  typedef uint32_t U32 __attribute__((vector_size(16)));
  typedef int32_t I32 __attribute__((vector_size(16)));
  typedef float F32 __attribute__((vector_size(16)));
  typedef uint16_t U16 __attribute__((vector_size(8)));
  typedef int16_t I16 __attribute__((vector_size(8)));

  static inline U32 iota() { return U32{0u, 1u, 2u, 3u}; }
  // Philox's 32x32->64 products: UMULL/UMULL2 give two 64-bit products each; UZP2/UZP1
  // gather their high and low halves back into lane order.
  static inline void mulhilo(uint32_t m, U32 x, U32& hi, U32& lo) {
    const uint32x4_t v = reinterpret_cast<uint32x4_t>(x);
    const uint32x4_t p01 = vreinterpretq_u32_u64(vmull_u32(vget_low_u32(v), vdup_n_u32(m)));
    const uint32x4_t p23 = vreinterpretq_u32_u64(vmull_high_u32(v, vdupq_n_u32(m)));
    hi = reinterpret_cast<U32>(vuzp2q_u32(p01, p23));
    lo = reinterpret_cast<U32>(vuzp1q_u32(p01, p23));
  }
  static inline I32 as_i32(U32 x) { return reinterpret_cast<I32>(x); }
  // SCVTF rounds to nearest even, like CVTDQ2PS and static_cast<float> (exact below 2^24).
  static inline F32 cvt_f32(I32 x) { return __builtin_convertvector(x, F32); }
  static inline U16 narrow16(U32 x) { return __builtin_convertvector(x, U16); }
  static inline U32 bits(F32 x) { return reinterpret_cast<U32>(x); }
  static inline F32 from_bits(U32 x) { return reinterpret_cast<F32>(x); }
  static inline F32 sqrt(F32 x) {
    return reinterpret_cast<F32>(vsqrtq_f32(reinterpret_cast<float32x4_t>(x)));
  }
  static inline F32 splat(float c) { return reinterpret_cast<F32>(vdupq_n_f32(c)); }
  // FMLA: one rounding, the same bits as std::fma on the scalar path.
  static inline F32 fma(F32 a, F32 b, F32 c) {
    return reinterpret_cast<F32>(vfmaq_f32(reinterpret_cast<float32x4_t>(c),
                                           reinterpret_cast<float32x4_t>(a),
                                           reinterpret_cast<float32x4_t>(b)));
  }
  static inline F32 fma(F32 a, float b, float c) { return fma(a, splat(b), splat(c)); }
  static inline F32 fma(F32 a, F32 b, float c) { return fma(a, b, splat(c)); }
  static inline F32 fma(F32 a, float b, F32 c) { return fma(a, splat(b), c); }
  template <class M, class T>
  static inline T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  // True when every lane of a comparison mask (0 / -1 per lane) is set.
  static inline bool all(I32 m) { return vminvq_u32(reinterpret_cast<uint32x4_t>(m)) == 0xFFFFFFFFu; }
  // Interleave two vectors (ZIP1 / ZIP2): lo = a0 b0 a1 b1, hi = a2 b2 a3 b3.
  template <class V, class IV>
  static inline void zip(V a, V b, V& lo, V& hi) {
    constexpr int N = sizeof(V) / sizeof(a[0]);
    IV mlo, mhi;
    for (int i = 0; i < N / 2; ++i) {
      mlo[2 * i] = i;
      mlo[2 * i + 1] = i + N;
      mhi[2 * i] = i + N / 2;
      mhi[2 * i + 1] = i + N + N / 2;
    }
    lo = __builtin_shuffle(a, b, mlo);
    hi = __builtin_shuffle(a, b, mhi);
  }
  static inline void zip(F32 a, F32 b, F32& lo, F32& hi) { zip<F32, I32>(a, b, lo, hi); }

  // No non-temporal path: plain stores (STNP is only a hint on most cores; unmeasured here).
  static constexpr size_t kStreamBytes = 0;
  template <class V>
  static inline void store(void* p, const V& v, bool) {
    std::memcpy(p, &v, sizeof(V));
  }
  static inline void store_fence() {}
};

// float64 lanes: 2 doubles per register, so a group's float64 work runs in two halves of
// 2 blocks each (the same split as the x86 sets).
struct NeonLanesD {
  static constexpr int W = 2;
  typedef uint32_t U32 __attribute__((vector_size(8)));
  typedef int32_t I32 __attribute__((vector_size(8)));
  typedef uint64_t U64 __attribute__((vector_size(16)));
  typedef int64_t I64 __attribute__((vector_size(16)));
  typedef double F64 __attribute__((vector_size(16)));

  static inline I64 as_i64(U64 x) { return reinterpret_cast<I64>(x); }
  static inline U64 widen(U32 x) { return __builtin_convertvector(x, U64); }
  static inline U64 bits(F64 x) { return reinterpret_cast<U64>(x); }
  static inline F64 from_bits(U64 x) { return reinterpret_cast<F64>(x); }
  // Exact for |x| < 2^53, which covers every integer the transforms convert.
  static inline F64 cvt_f64(I64 x) { return __builtin_convertvector(x, F64); }
  static inline F64 splat(double c) { return reinterpret_cast<F64>(vdupq_n_f64(c)); }
  static inline F64 fma(F64 a, F64 b, F64 c) {
    return reinterpret_cast<F64>(vfmaq_f64(reinterpret_cast<float64x2_t>(c),
                                           reinterpret_cast<float64x2_t>(a),
                                           reinterpret_cast<float64x2_t>(b)));
  }
  static inline F64 fma(F64 a, double b, double c) { return fma(a, splat(b), splat(c)); }
  static inline F64 fma(F64 a, F64 b, double c) { return fma(a, b, splat(c)); }
  static inline F64 fma(F64 a, double b, F64 c) { return fma(a, splat(b), c); }
  static inline F64 sqrt(F64 x) {
    return reinterpret_cast<F64>(vsqrtq_f64(reinterpret_cast<float64x2_t>(x)));
  }
  template <class M, class T>
  static inline T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  static inline bool all(I64 m) { return vminvq_u32(reinterpret_cast<uint32x4_t>(m)) == 0xFFFFFFFFu; }
  static inline void zip(F64 a, F64 b, F64& lo, F64& hi) { NeonLanes::zip<F64, I64>(a, b, lo, hi); }
};

FASTINIT_KERNEL_NS_END
