// Paired lanes for AVX2: every vector is two native 256-bit vectors (lo = lanes 0..7,
// hi = lanes 8..15), and every operation is applied to both halves. This doubles the number
// of independent dependency chains in flight without changing any lane's arithmetic: the
// transforms are latency-bound chains (the logarithm's division, Horner polynomials), and an
// AVX2 group of 8 lanes left most of Zen's four vector pipes idle, while AVX-512 gets the same
// per-element parallelism from 16-lane registers. Lanes stay independent (each lane gets the
// operations it would get alone), so the bits are those of the scalar path.
//
// Pairs nest: PairLanes<PairLanes<H>> (a lane set's `Wide`) is four native vectors, which the
// 32-bit mappings use to evaluate two words of a block as one value (distributions.hpp). Every
// member and operator is always_inline: GCC's inlining heuristics gave up on the nested
// pairs and passed 128-byte aggregates through the stack (a call per fma).
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "fastinit/config.hpp"

FASTINIT_KERNEL_NS_BEGIN

template <class V>
struct Pair {
  V lo, hi;
};

template <class S>
constexpr bool kIsScalar = std::is_arithmetic<S>::value;

// Elementwise operators: pair with pair, pair with scalar, scalar with pair. GCC's vector
// extensions give each half's operator (and its result type: comparisons give signed masks).
#define FASTINIT_PAIR_BINOP(op)                                                               \
  template <class A, class B>                                                                 \
  FASTINIT_ALWAYS_INLINE auto operator op(const Pair<A>& a, const Pair<B>& b)                 \
      ->Pair<decltype(a.lo op b.lo)> {                                                        \
    return {a.lo op b.lo, a.hi op b.hi};                                                      \
  }                                                                                           \
  template <class A, class S, class = typename std::enable_if<kIsScalar<S>>::type>            \
  FASTINIT_ALWAYS_INLINE auto operator op(const Pair<A>& a, S s)->Pair<decltype(a.lo op s)> { \
    return {a.lo op s, a.hi op s};                                                            \
  }                                                                                           \
  template <class S, class B, class = typename std::enable_if<kIsScalar<S>>::type>            \
  FASTINIT_ALWAYS_INLINE auto operator op(S s, const Pair<B>& b)->Pair<decltype(s op b.lo)> { \
    return {s op b.lo, s op b.hi};                                                            \
  }
FASTINIT_PAIR_BINOP(+)
FASTINIT_PAIR_BINOP(-)
FASTINIT_PAIR_BINOP(*)
FASTINIT_PAIR_BINOP(/)
FASTINIT_PAIR_BINOP(&)
FASTINIT_PAIR_BINOP(|)
FASTINIT_PAIR_BINOP(^)
FASTINIT_PAIR_BINOP(<<)
FASTINIT_PAIR_BINOP(>>)
FASTINIT_PAIR_BINOP(<)
FASTINIT_PAIR_BINOP(<=)
FASTINIT_PAIR_BINOP(>)
FASTINIT_PAIR_BINOP(>=)
FASTINIT_PAIR_BINOP(==)
FASTINIT_PAIR_BINOP(!=)
#undef FASTINIT_PAIR_BINOP

template <class A>
FASTINIT_ALWAYS_INLINE Pair<A> operator-(const Pair<A>& a) {
  return {-a.lo, -a.hi};
}

// The lane set over pairs of H's vectors (H: the native-width float32 lanes).
template <class H>
struct PairLanes {
  static constexpr int W = 2 * H::W;
  // Two of this set's vectors as one value (see the header comment).
  using Wide = PairLanes<PairLanes<H>>;
  using U32 = Pair<typename H::U32>;
  using I32 = Pair<typename H::I32>;
  using F32 = Pair<typename H::F32>;
  using U16 = Pair<typename H::U16>;

  static FASTINIT_ALWAYS_INLINE I32 as_i32(U32 x) { return {H::as_i32(x.lo), H::as_i32(x.hi)}; }
  static FASTINIT_ALWAYS_INLINE F32 cvt_f32(I32 x) { return {H::cvt_f32(x.lo), H::cvt_f32(x.hi)}; }
  static FASTINIT_ALWAYS_INLINE U16 narrow16(U32 x) {
    return {H::narrow16(x.lo), H::narrow16(x.hi)};
  }
  static FASTINIT_ALWAYS_INLINE U32 bits(F32 x) { return {H::bits(x.lo), H::bits(x.hi)}; }
  static FASTINIT_ALWAYS_INLINE F32 from_bits(U32 x) {
    return {H::from_bits(x.lo), H::from_bits(x.hi)};
  }
  static FASTINIT_ALWAYS_INLINE F32 sqrt(F32 x) { return {H::sqrt(x.lo), H::sqrt(x.hi)}; }
  static FASTINIT_ALWAYS_INLINE F32 splat(float c) {
    const typename H::F32 v = H::splat(c);
    return {v, v};
  }
  static FASTINIT_ALWAYS_INLINE F32 fma(F32 a, F32 b, F32 c) {
    return {H::fma(a.lo, b.lo, c.lo), H::fma(a.hi, b.hi, c.hi)};
  }
  static FASTINIT_ALWAYS_INLINE F32 fma(F32 a, float b, float c) {
    return fma(a, splat(b), splat(c));
  }
  static FASTINIT_ALWAYS_INLINE F32 fma(F32 a, F32 b, float c) { return fma(a, b, splat(c)); }
  static FASTINIT_ALWAYS_INLINE F32 fma(F32 a, float b, F32 c) { return fma(a, splat(b), c); }
  template <class M, class T>
  static FASTINIT_ALWAYS_INLINE Pair<T> sel(
      const Pair<M>& mask, const Pair<T>& a, const Pair<T>& b) {
    return {H::sel(mask.lo, a.lo, b.lo), H::sel(mask.hi, a.hi, b.hi)};
  }
  static FASTINIT_ALWAYS_INLINE bool all(I32 m) { return H::all(m.lo & m.hi); }
  // Interleave over all 2W lanes: the first half of the result comes from the lo halves.
  template <class T>
  static FASTINIT_ALWAYS_INLINE void zip(
      const Pair<T>& a, const Pair<T>& b, Pair<T>& lo, Pair<T>& hi) {
    H::zip(a.lo, b.lo, lo.lo, lo.hi);
    H::zip(a.hi, b.hi, hi.lo, hi.hi);
  }

  static constexpr size_t kStreamBytes = H::kStreamBytes;
  template <class V>
  static FASTINIT_ALWAYS_INLINE void store(void* p, const V& v, bool nt) {
    H::store(p, v, nt);  // a Pair is its lo half followed by its hi half in memory
  }
  static FASTINIT_ALWAYS_INLINE void store_fence() { H::store_fence(); }
};

FASTINIT_KERNEL_NS_END
