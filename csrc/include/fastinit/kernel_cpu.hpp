// The CPU fill kernel, compiled once per instruction set by csrc/kernels_isa.cpp. The ISA is
// chosen by the compiler flags of that translation unit (no -march=native); the lane set L
// maps the generic transforms onto GCC vector types of the matching width.
#pragma once

#include <cstddef>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
// GCC 12's AVX-512 intrinsics make their undefined operands with a self-initialized local
// (`__m512i __Y = __Y;`), which -Wuninitialized reports at every inlined use. The warnings point
// into the header, so silencing them around its inclusion leaves this project's code checked
// (FASTINIT_WERROR=ON builds with -Werror). This must stay the first inclusion of the header in
// each kernel translation unit: a later one is skipped by its include guard.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define FASTINIT_X86_SIMD 1
#endif
// The Arm set: only in the translation unit built as the "neon" variant (the scalar variant is
// compiled for aarch64 too, without these lanes).
#if defined(__aarch64__) && defined(FASTINIT_ISA_NEON)
#define FASTINIT_NEON_SIMD 1
#endif

#include "fastinit/block_values.hpp"
#if defined(FASTINIT_X86_SIMD)
#include "fastinit/lanes_avx2.hpp"
#include "fastinit/philox_avx2_asm.inc"
#endif
#include "fastinit/lanes_scalar.hpp"
#include "fastinit/params.hpp"
#include "fastinit/philox.hpp"
#include "fastinit/transforms.hpp"
#if defined(FASTINIT_NEON_SIMD)
#include "fastinit/lanes_neon.hpp"
#endif

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
// The float32 lanes; float64 math uses VecLanesD, and Philox uses philox_vec below.
struct VecLanes {
  static constexpr int W_ = FASTINIT_VEC_W;
  static constexpr int W = W_;
  typedef uint32_t U32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef int32_t I32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef float F32 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef uint16_t U16 __attribute__((vector_size(2 * FASTINIT_VEC_W)));
  typedef int16_t I16 __attribute__((vector_size(2 * FASTINIT_VEC_W)));

  static inline I32 as_i32(U32 x) { return reinterpret_cast<I32>(x); }
  static inline F32 cvt_f32(I32 x) { return __builtin_convertvector(x, F32); }
  static inline U16 narrow16(U32 x) { return __builtin_convertvector(x, U16); }
  static inline U32 bits(F32 x) { return reinterpret_cast<U32>(x); }
  static inline F32 from_bits(U32 x) { return reinterpret_cast<F32>(x); }
  static inline F32 sqrt(F32 x) {
#if FASTINIT_VEC_W == 16
    return reinterpret_cast<F32>(_mm512_sqrt_ps(reinterpret_cast<__m512>(x)));
#else
    return reinterpret_cast<F32>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
#endif
  }
  // Broadcasts (set1 rather than `x * 0 + c`, which the compiler may not fold for floats).
#if FASTINIT_VEC_W == 16
  using NF = __m512;
  using ND = __m512d;
  static inline F32 splat(float c) { return reinterpret_cast<F32>(_mm512_set1_ps(c)); }
  static inline NF nfma(NF a, NF b, NF c) { return _mm512_fmadd_ps(a, b, c); }
  static inline ND nfma(ND a, ND b, ND c) { return _mm512_fmadd_pd(a, b, c); }
  static inline ND nsqrt(ND a) { return _mm512_sqrt_pd(a); }
#else
  using NF = __m256;
  using ND = __m256d;
  static inline F32 splat(float c) { return reinterpret_cast<F32>(_mm256_set1_ps(c)); }
  static inline NF nfma(NF a, NF b, NF c) { return _mm256_fmadd_ps(a, b, c); }
  static inline ND nfma(ND a, ND b, ND c) { return _mm256_fmadd_pd(a, b, c); }
  static inline ND nsqrt(ND a) { return _mm256_sqrt_pd(a); }
#endif
  // Fused multiply-add (one rounding): the same bits as std::fma on the scalar path.
  static inline F32 fma(F32 a, F32 b, F32 c) {
    return reinterpret_cast<F32>(
        nfma(reinterpret_cast<NF>(a), reinterpret_cast<NF>(b), reinterpret_cast<NF>(c)));
  }
  static inline F32 fma(F32 a, float b, float c) { return fma(a, splat(b), splat(c)); }
  static inline F32 fma(F32 a, F32 b, float c) { return fma(a, b, splat(c)); }
  static inline F32 fma(F32 a, float b, F32 c) { return fma(a, splat(b), c); }
  template <class M, class T>
  static inline T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  // True when every lane of a comparison mask (0 / -1 per lane) is set: one sign-bit
  // extraction per native register instead of a comparison through memory.
  static inline bool all(I32 m) {
#if FASTINIT_VEC_W == 16
    return _mm512_movepi32_mask(reinterpret_cast<__m512i>(m)) == 0xFFFF;
#else
    return _mm256_movemask_ps(reinterpret_cast<__m256>(m)) == 0xFF;
#endif
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

  // Bytes per native register, and the non-temporal store of one register's worth.
#if defined(__AVX512F__)
  static constexpr size_t kStreamBytes = 64;
  static inline void stream_chunk(void* p, const void* src) {
    __m512i v;
    std::memcpy(&v, src, sizeof v);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
  }
  static inline void store_chunk(void* p, const void* src) {
    __m512i v;
    std::memcpy(&v, src, sizeof v);
    _mm512_storeu_si512(p, v);
  }
#else
  static constexpr size_t kStreamBytes = 32;
  static inline void stream_chunk(void* p, const void* src) {
    __m256i v;
    std::memcpy(&v, src, sizeof v);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v);
  }
  static inline void store_chunk(void* p, const void* src) {
    __m256i v;
    std::memcpy(&v, src, sizeof v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  }
#endif
  // Whole registers are stored with an explicit unaligned store: with a plain memcpy of the
  // vector, GCC 12 merged the two store kinds' paths by spilling every output register to the
  // stack and copying it out in 16-byte pieces (two loads and two stores per register).
  template <class V>
  static inline void store(void* p, const V& v, bool nt) {
    if constexpr (sizeof(V) % kStreamBytes == 0) {
      for (size_t o = 0; o < sizeof(V); o += kStreamBytes) {
        char* const q = static_cast<char*>(p) + o;
        const char* const s = reinterpret_cast<const char*>(&v) + o;
        if (nt)
          stream_chunk(q, s);
        else
          store_chunk(q, s);
      }
    } else {
      std::memcpy(p, &v, sizeof(V));
    }
  }
  static inline void store_fence() { _mm_sfence(); }
};

// float64 lanes at native register width (8 doubles for AVX-512, 4 for AVX2): half as many
// Philox blocks per step as VecLanes, so no float64 vector spans two registers.
struct VecLanesD {
  static constexpr int W = FASTINIT_VEC_W / 2;
  typedef uint32_t U32 __attribute__((vector_size(2 * FASTINIT_VEC_W)));
  typedef int32_t I32 __attribute__((vector_size(2 * FASTINIT_VEC_W)));
  typedef uint64_t U64 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef int64_t I64 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  typedef double F64 __attribute__((vector_size(4 * FASTINIT_VEC_W)));
  using ND = VecLanes::ND;

  static inline I64 as_i64(U64 x) { return reinterpret_cast<I64>(x); }
  static inline U64 widen(U32 x) { return __builtin_convertvector(x, U64); }
  static inline U64 bits(F64 x) { return reinterpret_cast<U64>(x); }
  static inline F64 from_bits(U64 x) { return reinterpret_cast<F64>(x); }
  // Exact for |x| < 2^53, which covers every integer the transforms convert.
  static inline F64 cvt_f64(I64 x) {
#if FASTINIT_VEC_W == 16
    return __builtin_convertvector(x, F64);
#else
    // AVX2 has no int64 -> double instruction: convert the 32-bit halves exactly with the
    // 2^52 magic number and combine (both steps are exact, so the result is the same bits).
    const I64 hi = x >> 32;
    const U64 lo = reinterpret_cast<U64>(x) & uint64_t{0xFFFFFFFF};
    const U64 magic = reinterpret_cast<U64>(splat(0x1p52));
    const F64 flo = from_bits(lo | magic) - 0x1p52;
    const F64 fhi = from_bits(reinterpret_cast<U64>(hi + int64_t{0x80000000}) | magic) -
                    (0x1p52 + 0x1p31);
    return fhi * 0x1p32 + flo;
#endif
  }
  static inline F64 splat(double c) {
    F64 r;
    for (int i = 0; i < W; ++i) r[i] = c;
    return r;
  }
  static inline F64 fma(F64 a, F64 b, F64 c) {
    return reinterpret_cast<F64>(
        VecLanes::nfma(reinterpret_cast<ND>(a), reinterpret_cast<ND>(b), reinterpret_cast<ND>(c)));
  }
  static inline F64 fma(F64 a, double b, double c) { return fma(a, splat(b), splat(c)); }
  static inline F64 fma(F64 a, F64 b, double c) { return fma(a, b, splat(c)); }
  static inline F64 fma(F64 a, double b, F64 c) { return fma(a, splat(b), c); }
  static inline F64 sqrt(F64 x) { return reinterpret_cast<F64>(VecLanes::nsqrt(reinterpret_cast<ND>(x))); }
  template <class M, class T>
  static inline T sel(M mask, T a, T b) {
    return mask ? a : b;
  }
  static inline bool all(I64 m) {
#if FASTINIT_VEC_W == 16
    return _mm512_movepi64_mask(reinterpret_cast<__m512i>(m)) == 0xFF;
#else
    return _mm256_movemask_pd(reinterpret_cast<__m256d>(m)) == 0xF;
#endif
  }
  static inline void zip(F64 a, F64 b, F64& lo, F64& hi) { VecLanes::zip<F64, I64>(a, b, lo, hi); }
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

// CpuLanes: the float32 lanes of this translation unit; CpuLanesD: the native-width float64
// lanes that a SIMD group's float64 work is split into.
#if defined(FASTINIT_X86_SIMD) && FASTINIT_VEC_W == 16
using CpuLanes = VecLanes;
using CpuLanesD = VecLanesD;
#elif defined(FASTINIT_X86_SIMD)
// AVX2: pairs of 256-bit vectors, 16 lanes per step like AVX-512 (see lanes_avx2.hpp).
using CpuLanes = PairLanes<VecLanes>;
using CpuLanesD = VecLanesD;
#elif defined(FASTINIT_NEON_SIMD)
using CpuLanes = NeonLanes;
using CpuLanesD = NeonLanesD;
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

#if defined(__AVX512F__) || defined(__AVX2__)
// Which block each 32-bit lane of a native vector of philox_vec's output holds. Lanes are
// independent through every transform, so the order only decides how many shuffles put the
// elements in memory order afterwards; each order is chosen for its output path (AVX2 only:
// AVX-512 packs two halves with one two-source permute, vpermt2d, whatever the order, and its
// transposes are permutes either way, so it keeps kBlocks).
//   kBlocks:      0 1 2 3 4 5 6 7 (float64, whose lanes are split into halves of a vector).
//   kTranspose32: 0 2 4 6 | 1 3 5 7 (float32): an in-lane 4x4 transpose of the four word
//                 vectors then leaves blocks 2i and 2i+1 in output vector i, as in memory.
//   kPairs16:     0 1 4 5 | 2 3 6 7 (16-bit): one 32-bit unpack pair of the packed words
//                 gives blocks 0-3 and 4-7, as in memory.
// Neither needs a cross-lane shuffle (3-cycle latency and a single port on Intel and Zen).
enum class LaneOrder { kBlocks, kTranspose32, kPairs16 };

// The order emit_words's output path for lanes L and dtype T expects: the one place that
// decides it (the AVX2 output paths assert it).
template <class L, DType T>
constexpr LaneOrder lane_order_for() {
  constexpr bool pairs = FASTINIT_VEC_W == 8 && L::W == 2 * FASTINIT_VEC_W;
  return !pairs || T == DType::F64 ? LaneOrder::kBlocks
         : T == DType::F32         ? LaneOrder::kTranspose32
                                   : LaneOrder::kPairs16;
}

// Philox on x86 SIMD without recombining even and odd lanes in every round: each 32-bit
// counter word lives in the low half of a 64-bit lane, so mul_epu32 leaves the 32x32 product
// in place: its low half is already the new low word and the high word is one shift away.
// The upper halves of the lanes carry junk that no instruction reads. Two such halves
// (blocks 0..W/2-1 and W/2..W-1) are packed into 32-bit lanes once, after the tenth round.
// The words are exactly those of philox4x32_10 (the scalar reference): tests compare them.
#if FASTINIT_VEC_W == 16
using PReg = __m512i;
inline PReg p_set64(uint64_t v) { return _mm512_set1_epi64(static_cast<long long>(v)); }
inline PReg p_set32(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
inline PReg p_mul(PReg a, PReg b) { return _mm512_mul_epu32(a, b); }
// The high 32 bits of each 64-bit lane moved to its low half (the upper half keeps a copy,
// which nothing reads). A dword shuffle runs on the shuffle port, while a 64-bit shift would
// compete with the multiplies for the same port: Philox is bound by that port.
inline PReg p_hi(PReg a) { return _mm512_shuffle_epi32(a, static_cast<_MM_PERM_ENUM>(0xF5)); }
inline PReg p_xor3(PReg a, PReg b, PReg c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
inline PReg p_add64(PReg a, PReg b) { return _mm512_add_epi64(a, b); }
template <LaneOrder>
inline PReg p_lane_index() { return _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0); }
// Low 32-bit halves of a's and b's 64-bit lanes, a's first.
template <LaneOrder>
inline PReg p_pack(PReg a, PReg b) {
  const __m512i idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  return _mm512_permutex2var_epi32(a, idx, b);
}
#else
using PReg = __m256i;
inline PReg p_set64(uint64_t v) { return _mm256_set1_epi64x(static_cast<long long>(v)); }
inline PReg p_set32(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
inline PReg p_mul(PReg a, PReg b) { return _mm256_mul_epu32(a, b); }
inline PReg p_hi(PReg a) { return _mm256_shuffle_epi32(a, 0xF5); }
// a ^ b ^ c where a (the fresh high word) is on the round's critical path and b ^ c is not:
// xoring b and c first makes a round multiply -> shuffle -> xor (5 cycles) instead of ending in
// two dependent xors (6). AVX2 Philox is bound by that latency, not by its ports (measured:
// 10-20% less time for Philox alone on Zen 4). The empty asm keeps GCC from reassociating.
inline PReg p_xor3(PReg a, PReg b, PReg c) {
  PReg t = _mm256_xor_si256(b, c);
  __asm__("" : "+x"(t));
  return _mm256_xor_si256(t, a);
}
inline PReg p_add64(PReg a, PReg b) { return _mm256_add_epi64(a, b); }
// Lanes of a (and of b, 4 blocks on) hold blocks 0 2 1 3 for kTranspose32, else 0 1 2 3.
template <LaneOrder O>
inline PReg p_lane_index() {
  return O == LaneOrder::kTranspose32 ? _mm256_set_epi64x(3, 1, 2, 0) : _mm256_set_epi64x(3, 2, 1, 0);
}
template <LaneOrder O>
inline PReg p_pack(PReg a, PReg b) {
  // The low halves as [a0 a1 b0 b1 | a2 a3 b2 b3]: one in-lane shuffle. That is already the
  // order kPairs16 and kTranspose32 want (see LaneOrder); kBlocks puts the 64-bit pairs in
  // block order with a cross-lane permute.
  const __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88);
  if constexpr (O != LaneOrder::kBlocks) return _mm256_castps_si256(s);
  return _mm256_permute4x64_epi64(_mm256_castps_si256(s), 0xD8);
}
#endif

// The ten round keys, computed once per call of the kernel and kept broadcast to full
// registers: the xors then read them as memory operands (AVX2 has no embedded broadcast), so
// a round spends no instruction on its keys. Round 0's other inputs besides the block counter
// are the stream's words, the same for every block, so the parts of its output that depend on
// them alone are computed here too (philox_start): A = hi(M1 * stream_lo) ^ k0,
// B = lo(M1 * stream_lo) and C = stream_hi ^ k1, one 32-bit value in each 64-bit lane.
// (k[0] and k[1] are folded into A and C and no longer read; they stay so that round r's
// keys sit at byte 64 r, where the generated assembly addresses them.)
struct KeySchedule {
  PReg k[20];
  PReg a, b, c;
  PReg b1;  // b ^ round 1's k0 (the shared-high-word start, below)
  KeySchedule(uint64_t key, uint64_t stream) {
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * (stream & 0xFFFFFFFFu);
    a = p_set64(static_cast<uint32_t>(p1 >> 32) ^ k0);
    b = p_set64(static_cast<uint32_t>(p1));
    c = p_set64(static_cast<uint32_t>(stream >> 32) ^ k1);
    for (int r = 0; r < 10; ++r) {
      k[2 * r] = p_set32(k0);
      k[2 * r + 1] = p_set32(k1);
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    b1 = b ^ k[2];
  }

  // Blocks that share the counter's high word h share round 0's word 0, X0 = h ^ A, and so
  // round 1's multiply of it: D = hi(M0 X0) ^ k1 of round 1 and E2 = lo(M0 X0) ^ k1 of round
  // 2 (philox_rounds_0_2_same_hi, and the generated code's SAME_HI variant). Cached for the last h:
  // it changes once in 2^32 blocks.
  struct High {
    PReg d, e2;
  };
  const High& high(uint64_t h) const {
    if (!have_high_ || high_ != h) {
      const uint32_t x0 = static_cast<uint32_t>(h) ^ low32(a);
      const uint64_t q = uint64_t{kPhiloxM0} * x0;
      hc_.d = p_set64(static_cast<uint32_t>(q >> 32) ^ low32(k[3]));
      hc_.e2 = p_set64(static_cast<uint32_t>(q) ^ low32(k[5]));
      high_ = h;
      have_high_ = true;
    }
    return hc_;
  }

 private:
  static uint32_t low32(const PReg& v) {
    uint32_t x;
    std::memcpy(&x, &v, sizeof x);
    return x;
  }
  mutable High hc_;
  mutable uint64_t high_ = 0;
  mutable bool have_high_ = false;
};

// One round r on N sets of W/2 blocks at once (s[j] = the four words of set j, one block per
// 64-bit lane). One round of one set is two dependency chains of multiply (3-5 cycles),
// shuffle and xor; a set alone leaves the multiply and shuffle ports idle most of the time, so
// the sets' rounds are interleaved, fully unrolled (the key operands are then addressed
// directly).
template <int N>
__attribute__((always_inline)) inline void philox_round(PReg (&s)[N][4], const KeySchedule& ks,
                                                        int r, PReg m0, PReg m1) {
  PReg p0[N], p1[N];
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    p0[j] = p_mul(s[j][0], m0);
    p1[j] = p_mul(s[j][2], m1);
  }
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    s[j][0] = p_xor3(p_hi(p1[j]), s[j][1], ks.k[2 * r]);
    s[j][2] = p_xor3(p_hi(p0[j]), s[j][3], ks.k[2 * r + 1]);
    s[j][1] = p1[j];
    s[j][3] = p0[j];
  }
}
// Rounds 1 to 9 (round 0 is philox_start's).
template <int N>
__attribute__((always_inline)) inline void philox_sets(PReg (&s)[N][4], const KeySchedule& ks) {
  const PReg m0 = p_set64(kPhiloxM0), m1 = p_set64(kPhiloxM1);
#pragma GCC unroll 9
  for (int r = 1; r < 10; ++r) philox_round<N>(s, ks, r, m0, m1);
}

// A set of W/2 blocks from `block` on, in lane order O, after round 0: the counter's words are
// the low and high halves of each lane's 64-bit block index, and the stream's words enter
// through the schedule's A, B and C, so the round and the counter set-up take one add, one
// multiply, two shuffles and two xors instead of ten operations (tools/gen_philox_avx2.py
// does the same in assembly).
template <LaneOrder O>
__attribute__((always_inline)) inline void philox_start(uint64_t block, const KeySchedule& ks,
                                                        PReg (&s)[4]) {
  const PReg b = p_add64(p_set64(block), p_lane_index<O>());
  const PReg p0 = p_mul(b, p_set64(kPhiloxM0));
  s[0] = p_hi(b) ^ ks.a;
  s[1] = ks.b;
  s[2] = p_hi(p0) ^ ks.c;
  s[3] = p0;
}

template <LaneOrder O>
__attribute__((always_inline)) inline void philox_vec(uint64_t block, const KeySchedule& ks, VecLanes::U32& x0,
                       VecLanes::U32& x1, VecLanes::U32& x2, VecLanes::U32& x3) {
  constexpr int H = FASTINIT_VEC_W / 2;  // blocks per set
  PReg s[2][4];
  philox_start<O>(block, ks, s[0]);
  philox_start<O>(block + H, ks, s[1]);
  philox_sets<2>(s, ks);
  x0 = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][0], s[1][0]));
  x1 = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][1], s[1][1]));
  x2 = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][2], s[1][2]));
  x3 = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][3], s[1][3]));
}

#if FASTINIT_VEC_W == 8
// Rounds 0 to 2 of a set of W/2 blocks from `block` on that share the counter's high word,
// from KeySchedule::high's constants (as the generated code's SAME_HI variant): round 0 is
// one multiply, a shuffle and an xor, round 1 a multiply, a shuffle and two xors, round 2
// takes its word 3 from E2: 15 operations instead of 22.
template <LaneOrder O, int N>
__attribute__((always_inline)) inline void philox_rounds_0_2_same_hi(uint64_t block, const KeySchedule& ks,
                                                                     PReg (&s)[N][4], PReg m0, PReg m1) {
  const KeySchedule::High& hc = ks.high(block >> 32);
  PReg p0[N];
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    const PReg p = p_mul(p_add64(p_set64(block + j * (FASTINIT_VEC_W / 2)), p_lane_index<O>()), m0);
    const PReg q = p_mul(p_hi(p) ^ ks.c, m1);  // round 0's word 2, times M1
    s[j][0] = p_hi(q) ^ ks.b1;
    s[j][1] = q;
    s[j][2] = p ^ hc.d;
  }
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    p0[j] = p_mul(s[j][0], m0);
    const PReg p1 = p_mul(s[j][2], m1);
    s[j][0] = p_xor3(p_hi(p1), s[j][1], ks.k[4]);
    s[j][1] = p1;
  }
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    s[j][2] = p_hi(p0[j]) ^ hc.e2;
    s[j][3] = p0[j];
  }
}

// One half of a pair's blocks, out of line: inlined twice, the sixteen state registers of the
// second half and the outputs of the first exceed AVX2's sixteen registers and spill. (Four
// sets interleaved in one function spill too: measured 1.3x slower than two calls.) Blocks
// that share the counter's high word (all but one half in 2^29) start from
// philox_rounds_0_2_same_hi.
template <LaneOrder O>
__attribute__((noinline)) void philox_vec_half(uint64_t block,
                                               const KeySchedule& ks, VecLanes::U32 (&x)[4]) {
  if (block >> 32 != (block + FASTINIT_VEC_W - 1) >> 32) {
    philox_vec<O>(block, ks, x[0], x[1], x[2], x[3]);
    return;
  }
  const PReg m0 = p_set64(kPhiloxM0), m1 = p_set64(kPhiloxM1);
  PReg s[2][4];
  philox_rounds_0_2_same_hi<O, 2>(block, ks, s, m0, m1);
#pragma GCC unroll 7
  for (int r = 3; r < 10; ++r) philox_round<2>(s, ks, r, m0, m1);
  // (Four named statements: as a loop, GCC stored the state to the stack and looped.)
  x[0] = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][0], s[1][0]));
  x[1] = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][1], s[1][1]));
  x[2] = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][2], s[1][2]));
  x[3] = reinterpret_cast<VecLanes::U32>(p_pack<O>(s[0][3], s[1][3]));
}

// The paired AVX2 lanes: blocks 0..7 in the lo vectors, 8..15 in the hi vectors (each in
// order O).
template <LaneOrder O>
__attribute__((always_inline)) inline void philox_vec(uint64_t block,
                                                      const KeySchedule& ks,
                                                      Pair<VecLanes::U32>& x0,
                                                      Pair<VecLanes::U32>& x1,
                                                      Pair<VecLanes::U32>& x2,
                                                      Pair<VecLanes::U32>& x3) {
  VecLanes::U32 lo[4], hi[4];
  philox_vec_half<O>(block, ks, lo);
  philox_vec_half<O>(block + FASTINIT_VEC_W, ks, hi);
  x0 = {lo[0], hi[0]};
  x1 = {lo[1], hi[1]};
  x2 = {lo[2], hi[2]};
  x3 = {lo[3], hi[3]};
}

// The words of consecutive AVX2 groups (16 blocks each), the same as philox_vec gives, from
// three sets of four blocks kept in flight at staggered rounds by generated assembly
// (philox_avx2_asm.inc; tools/gen_philox_avx2.py says why): a set that finishes is stored and
// restarted on the next blocks, so the multiply port never waits for a batch to start or end.
// It computes a refill of FASTINIT_PHILOX_AVX2_SETS sets (3 groups) at a time, so it pays off
// on ranges of several groups; fill_range_typed uses philox_vec for short ones.
//
// Ordered: the generated code's ORDERED variant leaves each set's words in memory order (four
// words of one block after another, blocks 0-1 then 2-3; kTranspose32 lanes only), for a
// transform that treats every word alike (float32 uniform_): next_ordered gives them.
template <LaneOrder O, bool Ordered = false>
class PhiloxAhead {
  static_assert(!Ordered || O == LaneOrder::kTranspose32, "memory order needs lanes 0 2 1 3");

 public:
  PhiloxAhead(uint64_t block, const KeySchedule& ks) : ks_(ks), next_(block + 12) {
    // Prime: the set that finishes i-th gets blocks block + 4i and the rounds it has done.
    const int done[3] = FASTINIT_PHILOX_AVX2_OFFSETS, order[3] = FASTINIT_PHILOX_AVX2_ORDER;
    const PReg m0 = p_set64(kPhiloxM0), m1 = p_set64(kPhiloxM1);
    for (int i = 0; i < 3; ++i) {
      const int j = order[i];
      PReg one[1][4];
      philox_start<O>(block + 4 * i, ks, one[0]);
      for (int r = 1; r < done[j]; ++r) philox_round<1>(one, ks, r, m0, m1);
      std::memcpy(s_[j], one[0], sizeof one[0]);
    }
    // ctx as tools/gen_philox_avx2.py lays it out (the counter, or the high word's constants
    // and the p operand, are set per refill).
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_CTR_INC, p_set64(4));
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_A, ks.a);
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_B, ks.b);
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_M0, p_set64(kPhiloxM0));
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_M1, p_set64(kPhiloxM1));
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_C, ks.c);
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_B1, ks.b1);
    ctx_put(FASTINIT_PHILOX_AVX2_CTX_P_INC, p_set64(4 * uint64_t{kPhiloxM0}));
  }

  // The fewest groups worth priming for: two refills (one refill is three groups, so a shorter
  // range would compute up to 3x the blocks it needs).
  static constexpr int64_t kMinGroups = 2 * FASTINIT_PHILOX_AVX2_SETS / 4;

  // The next group's 64 words in memory order, 8 consecutive in each register (Ordered).
  FASTINIT_ALWAYS_INLINE void next_ordered(Pair<VecLanes::U32>& r0, Pair<VecLanes::U32>& r1,
                                           Pair<VecLanes::U32>& r2, Pair<VecLanes::U32>& r3) {
    static_assert(Ordered, "next_ordered reads the ORDERED variant's buffer");
    if (pos_ == kSets) refill();
    const PReg(*b)[kRegs] = w_.buf + pos_;
    pos_ += 4;
    const auto w = [&](int i) -> Pair<VecLanes::U32> {
      return {reinterpret_cast<VecLanes::U32>(b[i][0]), reinterpret_cast<VecLanes::U32>(b[i][1])};
    };
    r0 = w(0);
    r1 = w(1);
    r2 = w(2);
    r3 = w(3);
  }

  // The next group's words, in lane order O (as philox_vec<O> for its first block).
  FASTINIT_ALWAYS_INLINE void next(Pair<VecLanes::U32>& x0, Pair<VecLanes::U32>& x1,
                                           Pair<VecLanes::U32>& x2, Pair<VecLanes::U32>& x3) {
    static_assert(!Ordered, "next reads one register per word");
    if (pos_ == kSets) refill();
    const PReg(*b)[kRegs] = w_.buf + pos_;
    pos_ += 4;
    const auto w = [&](int k) -> Pair<VecLanes::U32> {
      return {reinterpret_cast<VecLanes::U32>(p_pack<O>(b[0][k], b[1][k])),
              reinterpret_cast<VecLanes::U32>(p_pack<O>(b[2][k], b[3][k]))};
    };
    x0 = w(0);
    x1 = w(1);
    x2 = w(2);
    x3 = w(3);
  }

 private:
  static constexpr int kSets = FASTINIT_PHILOX_AVX2_SETS;
  static constexpr int kRegs = Ordered ? 2 : 4;  // registers a set is written out as
  static_assert(kSets % 4 == 0, "a refill holds whole groups");

  // A refill restarts the sets on blocks [next_, next_ + 4 kSets). When they all share the
  // counter's high word (every refill but one in 2^26), round 0's word 0 is the same for all,
  // and the generated code runs rounds 0 and 1 in 7 operations instead of 14 from constants
  // of that word (KeySchedule::high); else the variant that computes every round of every block.
  __attribute__((noinline)) void refill() {
    const uint64_t first = next_;
    next_ += 4 * kSets;
    const PReg blocks = p_add64(p_set64(first), p_lane_index<O>());
    PReg t0, t1;
#define FASTINIT_PHILOX_AVX2_OPERANDS                                                           \
  : [s00] "+x"(s_[0][0]), [s01] "+x"(s_[0][1]), [s02] "+x"(s_[0][2]), [s03] "+x"(s_[0][3]), \
    [s10] "+x"(s_[1][0]), [s11] "+x"(s_[1][1]), [s12] "+x"(s_[1][2]), [s13] "+x"(s_[1][3]), \
    [s20] "+x"(s_[2][0]), [s21] "+x"(s_[2][1]), [s22] "+x"(s_[2][2]), [s23] "+x"(s_[2][3]), \
    [t0] "=&x"(t0), [t1] "=&x"(t1), [p] "+x"(p)                                             \
  : [k] "r"(ks_.k), [ctx] "r"(w_.ctx)                                                        \
  : "memory"
    if (first >> 32 == (next_ - 1) >> 32) {  // (a refill that wraps at 2^64 differs too)
      const KeySchedule::High& hc = ks_.high(first >> 32);
      ctx_put(FASTINIT_PHILOX_AVX2_CTX_D, hc.d);
      ctx_put(FASTINIT_PHILOX_AVX2_CTX_E2, hc.e2);
      PReg p = p_mul(blocks, p_set64(kPhiloxM0));  // lo(block) * M0, 64 bits per lane
      if constexpr (Ordered)
        __asm__ volatile(FASTINIT_PHILOX_AVX2_ASM_SAME_HI_ORDERED FASTINIT_PHILOX_AVX2_OPERANDS);
      else
        __asm__ volatile(FASTINIT_PHILOX_AVX2_ASM_SAME_HI FASTINIT_PHILOX_AVX2_OPERANDS);
    } else {
      PReg p = blocks;  // unused by this variant
      ctx_put(FASTINIT_PHILOX_AVX2_CTX_CTR, blocks);
      if constexpr (Ordered)
        __asm__ volatile(FASTINIT_PHILOX_AVX2_ASM_ANY_ORDERED FASTINIT_PHILOX_AVX2_OPERANDS);
      else
        __asm__ volatile(FASTINIT_PHILOX_AVX2_ASM_ANY FASTINIT_PHILOX_AVX2_OPERANDS);
    }
#undef FASTINIT_PHILOX_AVX2_OPERANDS
    pos_ = 0;
  }

  void ctx_put(int offset, const PReg& v) {
    std::memcpy(reinterpret_cast<char*>(w_.ctx) + offset, &v, sizeof v);
  }

  const KeySchedule& ks_;
  PReg s_[3][4];               // the sets in flight (word k of set j)
  uint64_t next_;              // the first block of the next refill's restarts
  // What the generated code addresses from one register (an asm statement takes at most 30
  // operands): ctx, then the last refill's sets in block order.
  struct Work {
    alignas(32) uint64_t ctx[FASTINIT_PHILOX_AVX2_CTX_BYTES / 8];
    PReg buf[kSets][kRegs];
  } w_;
  static_assert(offsetof(Work, buf) == FASTINIT_PHILOX_AVX2_CTX_BYTES, "the sets follow ctx");
  int pos_ = kSets;            // the next set of w_.buf to hand out
};
#endif
#endif

// The words of the group that starts at `block`, in the lane order emit_words expects.
template <class L, DType T, class KS>
inline void group_words(const FillParams& P, const KS& ks, uint64_t block, typename L::U32& x0,
                        typename L::U32& x1, typename L::U32& x2, typename L::U32& x3) {
#if defined(FASTINIT_X86_SIMD)
  if constexpr (L::W > 1) {
    philox_vec<lane_order_for<L, T>()>(block, ks, x0, x1, x2, x3);
  } else
#endif
    philox_lanes<L>(block, P.key, P.stream, x0, x1, x2, x3);
}

// One group = L::W consecutive Philox blocks = W * (4 or 2) consecutive elements, written to
// dst in logical order, from the group's words. (always_inline: fill_range_typed calls it from
// four places, and GCC then kept it out of line, passing the words through the stack.)
template <class L, Dist D, DType T>
FASTINIT_ALWAYS_INLINE void emit_words(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                                       typename L::U32 x2, typename L::U32 x3, void* dst, bool nt) {
  using U32 = typename L::U32;
  using F32 = typename L::F32;
  if constexpr (T == DType::F64) {
    char* d = static_cast<char*>(dst);
#if defined(FASTINIT_X86_SIMD) || defined(FASTINIT_NEON_SIMD)
    if constexpr (L::W > 1) {
      // float64 math runs on native-width vectors, L::W / LD::W pieces of the group's blocks
      // in turn: halves on AVX-512 and NEON, quarters on AVX2's paired lanes.
      using LD = CpuLanesD;
      const U32 xs[4] = {x0, x1, x2, x3};
      for (int h = 0; h < L::W / LD::W; ++h) {
        typename LD::U32 xh[4];
        for (int k = 0; k < 4; ++k)
          std::memcpy(&xh[k], reinterpret_cast<const char*>(&xs[k]) + h * sizeof(xh[k]),
                      sizeof(xh[k]));
        typename LD::F64 y0, y1, o0, o1;
        block_y_f64<LD, D>(P, xh[0], xh[1], xh[2], xh[3], y0, y1);
        LD::zip(y0, y1, o0, o1);
        L::store(d + h * 2 * sizeof(o0), o0, nt);
        L::store(d + h * 2 * sizeof(o0) + sizeof(o0), o1, nt);
      }
    } else
#endif
    {
      typename L::F64 y0, y1, o0, o1;
      block_y_f64<L, D>(P, x0, x1, x2, x3, y0, y1);
      L::zip(y0, y1, o0, o1);
      L::store(d, o0, nt);
      L::store(d + sizeof(o0), o1, nt);
    }
  } else {
    F32 y[4];
    block_y_f32<L, D>(P, x0, x1, x2, x3, y);
    char* d = static_cast<char*>(dst);
    if constexpr (T == DType::F32) {
#if FASTINIT_VEC_W == 8
      if constexpr (L::W == 2 * FASTINIT_VEC_W) {
        static_assert(lane_order_for<L, T>() == LaneOrder::kTranspose32);
        // AVX2, lanes in kTranspose32 order: an in-lane 4x4 transpose of each half's word
        // vectors gives [block 0 | block 1], [2 | 3], [4 | 5], [6 | 7] (8 in-lane shuffles per
        // 32 elements; a transpose from block order took 4 more, cross-lane, plus 4 permutes
        // in the packing).
        for (int h = 0; h < 2; ++h) {
          const __m256 w0 = reinterpret_cast<__m256>(h ? y[0].hi : y[0].lo);
          const __m256 w1 = reinterpret_cast<__m256>(h ? y[1].hi : y[1].lo);
          const __m256 w2 = reinterpret_cast<__m256>(h ? y[2].hi : y[2].lo);
          const __m256 w3 = reinterpret_cast<__m256>(h ? y[3].hi : y[3].lo);
          const __m256d t0 = _mm256_castps_pd(_mm256_unpacklo_ps(w0, w1));
          const __m256d t1 = _mm256_castps_pd(_mm256_unpackhi_ps(w0, w1));
          const __m256d t2 = _mm256_castps_pd(_mm256_unpacklo_ps(w2, w3));
          const __m256d t3 = _mm256_castps_pd(_mm256_unpackhi_ps(w2, w3));
          // (Four named stores: an array stored in a loop went through the stack.)
          char* const q = d + h * 4 * sizeof(__m256);
          L::store(q, _mm256_unpacklo_pd(t0, t2), nt);
          L::store(q + sizeof(__m256), _mm256_unpackhi_pd(t0, t2), nt);
          L::store(q + 2 * sizeof(__m256), _mm256_unpacklo_pd(t1, t3), nt);
          L::store(q + 3 * sizeof(__m256), _mm256_unpackhi_pd(t1, t3), nt);
        }
        return;
      }
#endif
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
      U32 hb[4];  // the 16-bit results, one per 32-bit lane (below 2^16)
      // Unrolled: as a loop, GCC kept y and hb on the stack (AVX2: 24 extra loads and stores
      // per 64 elements).
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k)
        hb[k] = T == DType::BF16 ? f32_to_bf16_bits<L>(y[k]) : f32_to_f16_bits<L>(y[k]);
#if FASTINIT_VEC_W == 16
      if constexpr (L::W == 16) {
        // AVX-512BW: gather the 16-bit results of words (0, 1) and (2, 3) into halfword pairs,
        // then interleave the pairs as 32-bit lanes: 4 permutes for 64 elements and two full
        // stores, instead of 8 shuffles, 4 narrowing moves and 4 half-width stores.
        const __m512i pair_idx = _mm512_set_epi16(
            62, 30, 60, 28, 58, 26, 56, 24, 54, 22, 52, 20, 50, 18, 48, 16,
            46, 14, 44, 12, 42, 10, 40, 8, 38, 6, 36, 4, 34, 2, 32, 0);
        const __m512i a = _mm512_permutex2var_epi16(reinterpret_cast<__m512i>(hb[0]), pair_idx,
                                                    reinterpret_cast<__m512i>(hb[1]));
        const __m512i b = _mm512_permutex2var_epi16(reinterpret_cast<__m512i>(hb[2]), pair_idx,
                                                    reinterpret_cast<__m512i>(hb[3]));
        const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        const __m512i o0 = _mm512_permutex2var_epi32(a, lo_idx, b);
        const __m512i o1 = _mm512_permutex2var_epi32(a, hi_idx, b);
        L::store(d, o0, nt);
        L::store(d + sizeof(o0), o1, nt);
        return;
      }
#endif
#if FASTINIT_VEC_W == 8
      if constexpr (L::W == 2 * FASTINIT_VEC_W) {
        static_assert(lane_order_for<L, T>() == LaneOrder::kPairs16);
        // AVX2 (no 16-bit permutes): words 0 and 1 of a block become the low and high halves
        // of one 32-bit lane by a shift and an or (the values are below 2^16), likewise words
        // 2 and 3; with the lanes in kPairs16 order (blocks 0 1 4 5 | 2 3 6 7), one 32-bit
        // unpack pair then gives blocks 0-3 and 4-7 in memory order: 6 operations and two
        // full stores for 32 elements. (Per half of the pair: blocks 0..7, then 8..15.)
        __m256i p01[2], p23[2];
        if constexpr (T == DType::BF16) {
          // bfloat16 rounds words 1 and 3 into their lanes' high halves already: a 16-bit blend
          // takes them from there beside words 0 and 2 (one operation instead of a shift down,
          // a shift up and an or; hb[1] and hb[3] are then dead code).
          const U32 h1 = f32_to_bf16_bits_high<L>(y[1]), h3 = f32_to_bf16_bits_high<L>(y[3]);
          const auto blend = [](VecLanes::U32 lo16, VecLanes::U32 hi16) {
            return _mm256_blend_epi16(reinterpret_cast<__m256i>(lo16), reinterpret_cast<__m256i>(hi16), 0xAA);
          };
          p01[0] = blend(hb[0].lo, h1.lo);
          p01[1] = blend(hb[0].hi, h1.hi);
          p23[0] = blend(hb[2].lo, h3.lo);
          p23[1] = blend(hb[2].hi, h3.hi);
        } else {
          const U32 p01u = hb[0] | (hb[1] << 16), p23u = hb[2] | (hb[3] << 16);
          p01[0] = reinterpret_cast<__m256i>(p01u.lo);
          p01[1] = reinterpret_cast<__m256i>(p01u.hi);
          p23[0] = reinterpret_cast<__m256i>(p23u.lo);
          p23[1] = reinterpret_cast<__m256i>(p23u.hi);
        }
        for (int h = 0; h < 2; ++h) {
          const __m256i o0 = _mm256_unpacklo_epi32(p01[h], p23[h]);
          const __m256i o1 = _mm256_unpackhi_epi32(p01[h], p23[h]);
          L::store(d + h * 2 * sizeof(o0), o0, nt);
          L::store(d + h * 2 * sizeof(o0) + sizeof(o0), o1, nt);
        }
        return;
      }
#endif
      // Round in 32-bit lanes, interleave as 32-bit lanes (the fast float32 shuffle), and
      // narrow each output vector to 16 bits only at the end.
      F32 h[4];
      for (int k = 0; k < 4; ++k) h[k] = L::from_bits(hb[k]);
      F32 t0, t1, t2, t3, o[4];
      L::zip(h[0], h[2], t0, t1);
      L::zip(h[1], h[3], t2, t3);
      L::zip(t0, t2, o[0], o[1]);
      L::zip(t1, t3, o[2], o[3]);
      for (int k = 0; k < 4; ++k) {
        const U16 v = L::narrow16(L::bits(o[k]));
        L::store(d + k * sizeof(U16), v, nt);
      }
    }
  }
}

#if defined(FASTINIT_X86_SIMD) && FASTINIT_VEC_W == 8
// A group of float32 elements from words already in memory order (r0..r3: 8 registers of 8
// consecutive words): the distribution's word transform on each, stored as they are. Only for
// transforms that treat every word alike (uniform's block_f32 applies one formula per word).
template <class L, Dist D>
FASTINIT_ALWAYS_INLINE void emit_ordered_f32(const FillParams& P, typename L::U32 r0, typename L::U32 r1,
                                             typename L::U32 r2, typename L::U32 r3, void* dst, bool nt) {
  static_assert(D == Dist::Uniform, "a transform that treats every word alike");
  typename L::F32 y[4];
  block_y_f32<L, D>(P, r0, r1, r2, r3, y);
  char* const d = static_cast<char*>(dst);
  // (Eight named stores: an array stored in a loop went through the stack.)
  L::store(d, reinterpret_cast<__m256>(y[0].lo), nt);
  L::store(d + 32, reinterpret_cast<__m256>(y[0].hi), nt);
  L::store(d + 64, reinterpret_cast<__m256>(y[1].lo), nt);
  L::store(d + 96, reinterpret_cast<__m256>(y[1].hi), nt);
  L::store(d + 128, reinterpret_cast<__m256>(y[2].lo), nt);
  L::store(d + 160, reinterpret_cast<__m256>(y[2].hi), nt);
  L::store(d + 192, reinterpret_cast<__m256>(y[3].lo), nt);
  L::store(d + 224, reinterpret_cast<__m256>(y[3].hi), nt);
}
#endif

// emit_ordered_f32 for words in memory order, else emit_words.
template <class L, Dist D, DType T, bool Ordered>
FASTINIT_ALWAYS_INLINE void emit_group(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                                       typename L::U32 x2, typename L::U32 x3, void* dst, bool nt) {
  if constexpr (Ordered) {
#if defined(FASTINIT_X86_SIMD) && FASTINIT_VEC_W == 8
    emit_ordered_f32<L, D>(P, x0, x1, x2, x3, dst, nt);
#else
    static_assert(!Ordered, "memory-order words come from the AVX2 pipeline only");
#endif
  } else {
    emit_words<L, D, T>(P, x0, x1, x2, x3, dst, nt);
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
#if defined(FASTINIT_X86_SIMD)
  const KeySchedule ks(P.key, P.stream);
#else
  const int ks = 0;  // the scalar and NEON paths bump the key inline
#endif
  if (n <= 0) return;
  // end <= 2^63 - 1 (a shard lies inside a global tensor of at most 2^63 - 1 elements), but
  // the group after the last one may start beyond it: loop over group numbers up to the
  // group of the last element, and compare against end - G, so no sum can overflow.
  const int64_t end = i0 + n;
  const int64_t g_last = (end - 1) / G;
  // Non-temporal stores need aligned addresses; the first whole group decides for all.
  if (nt) {
    const int64_t lead = (G - i0 % G) % G;  // elements before the first whole group
    nt = L::kStreamBytes != 0 &&
         reinterpret_cast<uintptr_t>(o + lead * isz) % (L::kStreamBytes ? L::kStreamBytes : 1) == 0;
  }
  using U32 = typename L::U32;
  // The groups in order; words(block, x0..x3) gives each group's words, in memory order when
  // `ordered` (std::true_type: emit_group writes them with emit_ordered_f32).
  const auto groups = [&](auto&& words, auto ordered) {
    constexpr bool kOrdered = decltype(ordered)::value;
    for (int64_t g = i0 / G; g <= g_last; ++g) {
      const int64_t s = g * G;
      const uint64_t block = static_cast<uint64_t>(g) * static_cast<uint64_t>(L::W);
      const bool ends_inside = s <= end - G;  // s + G <= end
      typename L::U32 x0, x1, x2, x3;
      words(block, x0, x1, x2, x3);
      if (s >= i0 && ends_inside) {
        emit_group<L, D, T, kOrdered>(P, x0, x1, x2, x3, o + (s - i0) * isz, nt);
      } else {
        emit_group<L, D, T, kOrdered>(P, x0, x1, x2, x3, tmp, false);
        const int64_t a = s > i0 ? s : i0;
        const int64_t b = ends_inside ? s + G : end;
        std::memcpy(o + (a - i0) * isz, tmp + (a - s) * isz, static_cast<size_t>((b - a) * isz));
      }
    }
  };
#if defined(FASTINIT_X86_SIMD) && FASTINIT_VEC_W == 8
  // AVX2 pairs: ranges of PhiloxAhead::kMinGroups or more take their words from PhiloxAhead,
  // where Philox is a large part of the time. Not trunc_normal, whose transform dominates:
  // there the refills' bursts of Philox work without stores cost more than they saved
  // (measured on Zen 2, 2^22 elements with streaming stores: 1.05x the time of philox_vec).
  // float32 uniform_ takes them in memory order (PhiloxAhead's Ordered variant): its transform
  // treats every word alike, so it runs on the words as they lie and needs no transpose.
  if constexpr (L::W == 2 * FASTINIT_VEC_W && D != Dist::TruncNormal) {
    constexpr bool kOrdered = D == Dist::Uniform && T == DType::F32;
    using Ahead = PhiloxAhead<lane_order_for<L, T>(), kOrdered>;
    if (g_last - i0 / G + 1 >= Ahead::kMinGroups) {
      Ahead ahead(static_cast<uint64_t>(i0 / G) * L::W, ks);
      groups(
          [&](uint64_t, U32& x0, U32& x1, U32& x2, U32& x3) {
            if constexpr (kOrdered)
              ahead.next_ordered(x0, x1, x2, x3);
            else
              ahead.next(x0, x1, x2, x3);
          },
          std::bool_constant<kOrdered>{});
      if (nt) L::store_fence();
      return;
    }
  }
#endif
  groups([&](uint64_t block, U32& x0, U32& x1, U32& x2, U32& x3) {
    group_words<L, T>(P, ks, block, x0, x1, x2, x3);
  }, std::false_type{});
  if (nt) L::store_fence();
}

// Every (distribution, dtype) pair comes from params.hpp's visitor; an unknown id throws.
template <class L>
void fill_range(const FillParams& P, void* out, int64_t i0, int64_t n, bool nt) {
  visit_fill(P.dist, P.dtype, [&](auto D, auto T) {
    fill_range_typed<L, decltype(D)::value, decltype(T)::value>(P, out, i0, n, nt);
  });
}

FASTINIT_KERNEL_NS_END
