// The CPU fill kernel, compiled once per instruction set by csrc/kernels_isa.cpp. The ISA is
// chosen by the compiler flags of that translation unit (no -march=native); the lane set L
// maps the generic transforms onto GCC vector types of the matching width.
#pragma once

#include <cstddef>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "fastinit/lanes_scalar.hpp"
#include "fastinit/params.hpp"
#include "fastinit/philox.hpp"
#include "fastinit/transforms.hpp"

FASTINIT_KERNEL_NS_BEGIN

#if defined(__AVX512F__) || defined(__AVX2__)
// SIMD lane sets over GCC vector extensions: arithmetic, comparisons and ?: come from the
// compiler; only the operations it cannot express portably use intrinsics.
#if defined(__AVX512F__)
#define FASTINIT_VEC_W 16
#else
#define FASTINIT_VEC_W 8
#endif
// (A class template cannot take the width: GCC drops vector_size attributes whose size
// depends on a template parameter, so the width is fixed per translation unit.)
struct VecLanes {
  static constexpr int W_ = FASTINIT_VEC_W;
  static constexpr int W = W_;
  typedef uint32_t U32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef int32_t I32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef float F32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef uint64_t U64 __attribute__((vector_size(8 * FASTINIT_VEC_W)));
  typedef int64_t I64 __attribute__((vector_size(8 * FASTINIT_VEC_W)));
  typedef double F64 __attribute__((vector_size(8 * FASTINIT_VEC_W)));
  typedef uint16_t U16 __attribute__((vector_size(2 * FASTINIT_VEC_W)));
  typedef int16_t I16 __attribute__((vector_size(2 * FASTINIT_VEC_W)));

  static inline void mulhilo(uint32_t m, U32 x, U32& hi, U32& lo) {
    // 32x32->64 products of the even and odd lanes, recombined into high and low words.
#if FASTINIT_VEC_W == 16
    const __m512i xv = reinterpret_cast<__m512i>(x);
    const __m512i mv = _mm512_set1_epi32(static_cast<int>(m));
    const __m512i pe = _mm512_mul_epu32(xv, mv);
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(xv, 32), mv);
    lo = reinterpret_cast<U32>(_mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32)));
    hi = reinterpret_cast<U32>(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po));
#else
    const __m256i xv = reinterpret_cast<__m256i>(x);
    const __m256i mv = _mm256_set1_epi32(static_cast<int>(m));
    const __m256i pe = _mm256_mul_epu32(xv, mv);
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(xv, 32), mv);
    lo = reinterpret_cast<U32>(_mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA));
    hi = reinterpret_cast<U32>(_mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA));
#endif
  }
  static inline I32 as_i32(U32 x) { return reinterpret_cast<I32>(x); }
  static inline I64 as_i64(U64 x) { return reinterpret_cast<I64>(x); }
  static inline F32 cvt_f32(I32 x) { return __builtin_convertvector(x, F32); }
  static inline F64 cvt_f64(I64 x) { return __builtin_convertvector(x, F64); }
  static inline U64 widen(U32 x) { return __builtin_convertvector(x, U64); }
  static inline U16 narrow16(U32 x) { return __builtin_convertvector(x, U16); }
  static inline U32 bits(F32 x) { return reinterpret_cast<U32>(x); }
  static inline F32 from_bits(U32 x) { return reinterpret_cast<F32>(x); }
  static inline U64 bits(F64 x) { return reinterpret_cast<U64>(x); }
  static inline F64 from_bits(U64 x) { return reinterpret_cast<F64>(x); }
  static inline F32 sqrt(F32 x) {
#if FASTINIT_VEC_W == 16
    return reinterpret_cast<F32>(_mm512_sqrt_ps(reinterpret_cast<__m512>(x)));
#else
    return reinterpret_cast<F32>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
#endif
  }
  static inline F64 sqrt(F64 x) {
    // Square root per native register; sqrt is correctly rounded, so the split is invisible.
    constexpr int kNative = 4;  // doubles per 256-bit register
    F64 r;
    for (int i = 0; i < W_; i += kNative) {
      __m256d v;
      std::memcpy(&v, reinterpret_cast<const char*>(&x) + i * 8, sizeof v);
      v = _mm256_sqrt_pd(v);
      std::memcpy(reinterpret_cast<char*>(&r) + i * 8, &v, sizeof v);
    }
    return r;
  }
  template <class M, class T>
  static inline T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  static inline U32 iota() {
    U32 r;
    for (int i = 0; i < W_; ++i) r[i] = static_cast<uint32_t>(i);
    return r;
  }
  // Interleave two vectors: lo = a0 b0 a1 b1 ..., hi = the second halves.
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
  static inline void zip(U16 a, U16 b, U16& lo, U16& hi) { zip<U16, I16>(a, b, lo, hi); }
  static inline void zip(F64 a, F64 b, F64& lo, F64& hi) { zip<F64, I64>(a, b, lo, hi); }

  // Bytes per native register, and the non-temporal store of one register's worth.
#if defined(__AVX512F__)
  static constexpr size_t kStreamBytes = 64;
  static inline void stream_chunk(void* p, const void* src) {
    __m512i v;
    std::memcpy(&v, src, sizeof v);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
  }
#else
  static constexpr size_t kStreamBytes = 32;
  static inline void stream_chunk(void* p, const void* src) {
    __m256i v;
    std::memcpy(&v, src, sizeof v);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v);
  }
#endif
  template <class V>
  static inline void store(void* p, const V& v, bool nt) {
    if (nt && sizeof(V) % kStreamBytes == 0) {
      for (size_t o = 0; o < sizeof(V); o += kStreamBytes)
        stream_chunk(static_cast<char*>(p) + o, reinterpret_cast<const char*>(&v) + o);
    } else {
      std::memcpy(p, &v, sizeof(V));
    }
  }
  static inline void store_fence() { _mm_sfence(); }
};
#endif

// The scalar path as a lane set with the extra members the kernel needs.
struct ScalarKernelLanes : ScalarLanes {
  static constexpr size_t kStreamBytes = 0;
  static inline U32 iota() { return 0u; }
  template <class V>
  static inline void zip(V a, V b, V& lo, V& hi) {
    lo = a;
    hi = b;
  }
  template <class V>
  static inline void store(void* p, const V& v, bool) {
    std::memcpy(p, &v, sizeof(V));
  }
  static inline void store_fence() {}
};

#if defined(__AVX512F__)
using CpuLanes = VecLanes;
#elif defined(__AVX2__)
using CpuLanes = VecLanes;
#else
using CpuLanes = ScalarKernelLanes;
#endif

template <class L>
inline void philox_lanes(uint64_t block, uint64_t key, uint64_t stream, typename L::U32& x0,
                         typename L::U32& x1, typename L::U32& x2, typename L::U32& x3) {
  using U32 = typename L::U32;
  const U32 io = L::iota();
  const U32 zero = io * 0u;
  x0 = io + static_cast<uint32_t>(block);
  const uint32_t hi = static_cast<uint32_t>(block >> 32);
  // Carry into the high counter word where block + lane wraps past 2^32.
  x1 = L::sel(x0 < io, zero + (hi + 1u), zero + hi);
  x2 = zero + static_cast<uint32_t>(stream);
  x3 = zero + static_cast<uint32_t>(stream >> 32);
  philox4x32_10<L>(x0, x1, x2, x3, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

// One group = L::W consecutive Philox blocks = W * (4 or 2) consecutive elements, written to
// dst in logical order.
template <class L, Dist D, DType T>
inline void emit_group(const FillParams& P, uint64_t block, void* dst, bool nt) {
  using U32 = typename L::U32;
  using F32 = typename L::F32;
  using F64 = typename L::F64;
  U32 x0, x1, x2, x3;
  philox_lanes<L>(block, P.key, P.stream, x0, x1, x2, x3);
  if constexpr (T == DType::F64) {
    F64 y0, y1;
    const F64 zero = L::cvt_f64(L::as_i64(L::widen(x0 * 0u)));
    if constexpr (D == Dist::Uniform) {
      y0 = unit_f64<L>(x0, x1) * P.d[1] + P.d[0];
      y1 = unit_f64<L>(x2, x3) * P.d[1] + P.d[0];
    } else if constexpr (D == Dist::Normal) {
      F64 z0, z1;
      box_muller_f64<L>(x0, x1, x2, x3, z0, z1);
      y0 = z0 * P.d[1] + P.d[0];
      y1 = z1 * P.d[1] + P.d[0];
    } else {
      y0 = trunc_std_f64<L>(unit_open_f64<L>(x0, x1), P.d[4], P.d[5], P.d[6]) * P.d[1] + P.d[0];
      y1 = trunc_std_f64<L>(unit_open_f64<L>(x2, x3), P.d[4], P.d[5], P.d[6]) * P.d[1] + P.d[0];
    }
    if constexpr (D != Dist::Normal) {
      const F64 lo = zero + P.d[2], hi = zero + P.d[3];
      y0 = L::sel(y0 < lo, lo, y0);
      y0 = L::sel(y0 > hi, hi, y0);
      y1 = L::sel(y1 < lo, lo, y1);
      y1 = L::sel(y1 > hi, hi, y1);
    }
    F64 o0, o1;
    L::zip(y0, y1, o0, o1);
    char* d = static_cast<char*>(dst);
    L::store(d, o0, nt);
    L::store(d + sizeof(F64), o1, nt);
  } else {
    F32 y[4];
    if constexpr (D == Dist::Uniform) {
      const U32 xs[4] = {x0, x1, x2, x3};
      for (int k = 0; k < 4; ++k) y[k] = unit_f32<L>(xs[k]) * P.f[1] + P.f[0];
    } else if constexpr (D == Dist::Normal) {
      box_muller_f32<L>(x0, x1, y[0], y[1]);
      box_muller_f32<L>(x2, x3, y[2], y[3]);
      for (int k = 0; k < 4; ++k) y[k] = y[k] * P.f[1] + P.f[0];
    } else {
      const U32 xs[4] = {x0, x1, x2, x3};
      for (int k = 0; k < 4; ++k)
        y[k] = trunc_std_f32<L>(unit_open_f32<L>(xs[k]), P.f[4], P.f[5], P.f[6]) * P.f[1] + P.f[0];
    }
    if constexpr (D != Dist::Normal) {
      const F32 zero = L::cvt_f32(L::as_i32(x0 * 0u));
      const F32 lo = zero + P.f[2], hi = zero + P.f[3];
      for (int k = 0; k < 4; ++k) {
        y[k] = L::sel(y[k] < lo, lo, y[k]);
        y[k] = L::sel(y[k] > hi, hi, y[k]);
      }
    }
    char* d = static_cast<char*>(dst);
    if constexpr (T == DType::F32) {
      F32 t0, t1, t2, t3, o0, o1, o2, o3;
      L::zip(y[0], y[2], t0, t1);
      L::zip(y[1], y[3], t2, t3);
      L::zip(t0, t2, o0, o1);
      L::zip(t1, t3, o2, o3);
      L::store(d, o0, nt);
      L::store(d + sizeof(F32), o1, nt);
      L::store(d + 2 * sizeof(F32), o2, nt);
      L::store(d + 3 * sizeof(F32), o3, nt);
    } else {
      using U16 = typename L::U16;
      U16 h[4];
      for (int k = 0; k < 4; ++k)
        h[k] = L::narrow16(T == DType::BF16 ? f32_to_bf16_bits<L>(y[k]) : f32_to_f16_bits<L>(y[k]));
      U16 t0, t1, t2, t3, o0, o1, o2, o3;
      L::zip(h[0], h[2], t0, t1);
      L::zip(h[1], h[3], t2, t3);
      L::zip(t0, t2, o0, o1);
      L::zip(t1, t3, o2, o3);
      L::store(d, o0, nt);
      L::store(d + sizeof(U16), o1, nt);
      L::store(d + 2 * sizeof(U16), o2, nt);
      L::store(d + 3 * sizeof(U16), o3, nt);
    }
  }
}

// Fill the logical elements [i0, i0 + n) into contiguous memory starting at out. Whole groups
// are written in place; the partial groups at either end go through a small stack buffer.
template <class L, Dist D, DType T>
void fill_range_typed(const FillParams& P, void* out, int64_t i0, int64_t n, bool nt) {
  constexpr int64_t E = (T == DType::F64) ? 2 : 4;
  constexpr int64_t G = L::W * E;
  constexpr int64_t isz = (T == DType::F64) ? 8 : (T == DType::F32 ? 4 : 2);
  alignas(64) char tmp[G * isz];
  char* const o = static_cast<char*>(out);
  const int64_t end = i0 + n;
  int64_t g = i0 / G;
  // Non-temporal stores need aligned addresses; the first whole group decides for all.
  if (nt) {
    const int64_t first_full = ((i0 + G - 1) / G) * G;
    nt = L::kStreamBytes != 0 &&
         reinterpret_cast<uintptr_t>(o + (first_full - i0) * isz) % (L::kStreamBytes ? L::kStreamBytes : 1) == 0;
  }
  for (; g * G < end; ++g) {
    const int64_t s = g * G;
    const uint64_t block = static_cast<uint64_t>(g) * static_cast<uint64_t>(L::W);
    if (s >= i0 && s + G <= end) {
      emit_group<L, D, T>(P, block, o + (s - i0) * isz, nt);
    } else {
      emit_group<L, D, T>(P, block, tmp, false);
      const int64_t a = s > i0 ? s : i0;
      const int64_t b = s + G < end ? s + G : end;
      std::memcpy(o + (a - i0) * isz, tmp + (a - s) * isz, static_cast<size_t>((b - a) * isz));
    }
  }
  if (nt) L::store_fence();
}

template <class L>
void fill_range(const FillParams& P, void* out, int64_t i0, int64_t n, bool nt) {
#define FASTINIT_CASE(D, T)                                 \
  if (P.dist == D && P.dtype == T) {                        \
    fill_range_typed<L, D, T>(P, out, i0, n, nt);           \
    return;                                                 \
  }
#define FASTINIT_CASES(D)         \
  FASTINIT_CASE(D, DType::F32)    \
  FASTINIT_CASE(D, DType::F64)    \
  FASTINIT_CASE(D, DType::F16)    \
  FASTINIT_CASE(D, DType::BF16)
  FASTINIT_CASES(Dist::Uniform)
  FASTINIT_CASES(Dist::Normal)
  FASTINIT_CASES(Dist::TruncNormal)
#undef FASTINIT_CASES
#undef FASTINIT_CASE
}

FASTINIT_KERNEL_NS_END
