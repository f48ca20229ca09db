// Bits -> distributions. Every function here is written once for any lane set L (scalar or
// SIMD) and uses only +, -, *, /, sqrt, explicit fused multiply-add (L::fma), integer
// operations and exact conversions. With floating-point contraction disabled these are all
// correctly rounded IEEE operations, so the scalar, AVX2, AVX-512 and CUDA paths produce the
// same bits. No libm call appears,
// because libm results differ between implementations and between vector and scalar code.
//
// The frozen mapping from Philox words to values (part of the stream contract):
//   32-bit class (float32; float16/bfloat16 round the float32 value):
//     uniform      y = low + (high - low) * u,   u = (w >> 8) * 2^-24            (one word)
//     normal       block (w0, w1, w2, w3) -> Box-Muller pairs (w0, w1) -> (z0, z1) and
//                  (w2, w3) -> (z2, z3); y = mean + std * z
//     trunc normal inverse CDF of u = ((w >> 9) + 1/2) * 2^-23 on [Phi(alpha), Phi(beta)]
//   64-bit class (float64), element j of a block uses words (2j, 2j+1):
//     uniform      u = ((w_hi << 21) | (w_lo >> 11)) * 2^-53
//     normal       block -> one Box-Muller pair: radius from (w0, w1), angle from (w2, w3)
//     trunc normal inverse CDF of u = ((53-bit integer >> 1) + 1/2) * 2^-52
#pragma once

#include "fastinit/config.hpp"

FASTINIT_KERNEL_NS_BEGIN

// ---------------------------------------------------------------- uniform variates

// The 24-bit integer of unit_f32, converted exactly (it fits the float32 significand).
template <class L>
FASTINIT_HD typename L::F32 unit_int_f32(typename L::U32 w) {
  return L::cvt_f32(L::as_i32(w >> 8));
}

// [0, 1) with 24 bits.
template <class L>
FASTINIT_HD typename L::F32 unit_f32(typename L::U32 w) {
  return unit_int_f32<L>(w) * 0x1p-24f;
}

// (0, 1) with 23 bits, symmetric about 1/2, so that u and 1 - u are both exact.
// (i + 1/2) * 2^-23 as one fused multiply-add: i * 2^-23 is exact, so the single rounding of
// the fma is that of the sum, and the value is exact either way (24 bits); one operation less.
template <class L>
FASTINIT_HD typename L::F32 unit_open_f32(typename L::U32 w) {
  return L::fma(L::cvt_f32(L::as_i32(w >> 9)), 0x1p-23f, 0x1p-24f);
}

template <class L>
FASTINIT_HD typename L::U64 join53(typename L::U32 hi, typename L::U32 lo) {
  return (L::widen(hi) << 21) | (L::widen(lo) >> 11);
}

// The 53-bit integer of unit_f64, converted exactly.
template <class L>
FASTINIT_HD typename L::F64 unit_int_f64(typename L::U32 hi, typename L::U32 lo) {
  return L::cvt_f64(L::as_i64(join53<L>(hi, lo)));
}

// [0, 1) with 53 bits.
template <class L>
FASTINIT_HD typename L::F64 unit_f64(typename L::U32 hi, typename L::U32 lo) {
  return unit_int_f64<L>(hi, lo) * 0x1p-53;
}

// (0, 1) with 52 bits, symmetric about 1/2.
template <class L>
FASTINIT_HD typename L::F64 unit_open_f64(typename L::U32 hi, typename L::U32 lo) {
  return L::fma(L::cvt_f64(L::as_i64(join53<L>(hi, lo) >> 1)), 0x1p-52, 0x1p-53);  // as in f32
}

// ---------------------------------------------------------------- natural logarithm
// ln(x) for positive normal x: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), and
// ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, summed as an odd series.
// m - 1 is exact there, so ln stays accurate relative to its value near x = 1.
//
// log_f32<L, K, S>(x) = S * ln(2^K x), for callers that scale the logarithm or its argument by
// powers of two: 2^K enters the exponent bits and S the constants, so it takes no operation,
// and every rounding is that of ln(2^K x) scaled by S (scaling by a power of two is exact;
// nothing here is subnormal), so the bits are those of S * log_f32(2^K * x) computed apart.
template <class L, int K = 0, int S = 1>
FASTINIT_HD typename L::F32 log_f32(typename L::F32 x) {
  static_assert(S == 1 || S == -1 || S == -2, "a scale the constants take exactly");
  using U32 = typename L::U32;
  using I32 = typename L::I32;
  using F32 = typename L::F32;
  // The reduction in integer arithmetic: adding bits(1.0f) - bits(T), T = the float after
  // sqrt(2)/2, carries into the exponent exactly when the significand m0 in [1, 2) exceeds
  // float(sqrt(2)), and the low bits plus bits(T) are then m0 / 2 (else m0). The same m and e
  // as comparing m0 with 1.41421356f, halving it and incrementing e (checked for every
  // positive normal float). The exponent's bias comes off in the same add: ix - 127 * 2^23 is
  // a signed 32-bit value (from -0x3EB504F4 to 0x414AFB0B for every positive normal x and
  // K <= 2), so an arithmetic shift gives floor(ix / 2^23) - 127 = e, and the low 23 bits,
  // which m takes, are unchanged: four operations where the comparison took nine.
  constexpr uint32_t kT = 0x3F3504F4u;
  static_assert(K >= 0 && K <= 2, "2^K x stays below 2^131: the exponent fits the shift");
  const U32 ix = L::bits(x) + (0x3F800000u - kT + (static_cast<uint32_t>(K) << 23) - (127u << 23));
  const I32 e = L::as_i32(ix) >> 23;
  const F32 m = L::from_bits((ix & 0x007FFFFFu) + kT);
  const F32 s = (m - 1.0f) / (m + 1.0f);
  const F32 s2 = s * s;
  // 2 s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9): truncation error < 1e-9 relative.
  F32 poly = L::fma(s2, 0.111111111f, 0.142857143f);
  poly = L::fma(poly, s2, 0.2f);
  poly = L::fma(poly, s2, 0.333333333f) * s2;
  const F32 s_2 = s * (2.0f * S);
  const F32 lnm = L::fma(s_2, poly, s_2);
  const F32 ef = L::cvt_f32(e);
  // ln 2 split so that e * kLn2Hi is exact for |e| < 256.
  return L::fma(ef, 0.693145751953125f * S, L::fma(ef, 1.42860677e-06f * S, lnm));
}

template <class L>
FASTINIT_HD typename L::F64 log_f64(typename L::F64 x) {
  using U64 = typename L::U64;
  using I64 = typename L::I64;
  using F64 = typename L::F64;
  // The integer reduction of log_f32, T = the double after sqrt(2)/2.
  constexpr uint64_t kT = 0x3FE6A09E667F3BCEu;
  const U64 ix = L::bits(x) + (uint64_t{0x3FF0000000000000} - kT);
  const I64 e = L::as_i64(ix >> 52) - 1023;
  const F64 m = L::from_bits((ix & uint64_t{0x000FFFFFFFFFFFFF}) + kT);
  const F64 s = (m - 1.0) / (m + 1.0);
  const F64 s2 = s * s;
  // 1/3, 1/5, ..., 1/21: truncation error < 1e-18 relative for |s| <= 0.1716.
  F64 poly = L::fma(s2, 0.047619047619047616, 0.052631578947368418);
  poly = L::fma(poly, s2, 0.058823529411764705);
  poly = L::fma(poly, s2, 0.066666666666666666);
  poly = L::fma(poly, s2, 0.076923076923076927);
  poly = L::fma(poly, s2, 0.090909090909090912);
  poly = L::fma(poly, s2, 0.1111111111111111);
  poly = L::fma(poly, s2, 0.14285714285714285);
  poly = L::fma(poly, s2, 0.2);
  poly = L::fma(poly, s2, 0.33333333333333331) * s2;
  const F64 s_2 = s * 2.0;
  const F64 lnm = L::fma(s_2, poly, s_2);
  const F64 ef = L::cvt_f64(e);
  // ln 2 = kLn2Hi + kLn2Lo with kLn2Hi carrying 32 significant bits (e * kLn2Hi exact).
  return L::fma(ef, 0.6931471803691238, L::fma(ef, 1.9082149292705877e-10, lnm));
}

// ---------------------------------------------------------------- sine and cosine on [0, pi/4]
// Taylor polynomials: on [0, pi/4] the first omitted term is below 2e-9 (float) and 1e-19
// (double), far under the rounding of the result.

template <class L>
FASTINIT_HD void sincos_quarter_f32(typename L::F32 x, typename L::F32& s, typename L::F32& c) {
  using F32 = typename L::F32;
  const F32 x2 = x * x;
  F32 ps = L::fma(x2, 2.75573192e-06f, -1.98412698e-04f);
  ps = L::fma(ps, x2, 8.33333333e-03f);
  ps = L::fma(ps, x2, -1.66666667e-01f);
  s = L::fma(x * x2, ps, x);
  F32 pc = L::fma(x2, -2.75573192e-07f, 2.48015873e-05f);
  pc = L::fma(pc, x2, -1.38888889e-03f);
  pc = L::fma(pc, x2, 4.16666667e-02f);
  pc = L::fma(pc, x2, -0.5f);
  c = L::fma(x2, pc, 1.0f);
}

template <class L>
FASTINIT_HD void sincos_quarter_f64(typename L::F64 x, typename L::F64& s, typename L::F64& c) {
  using F64 = typename L::F64;
  const F64 x2 = x * x;
  // sin: x - x^3/3! + ... - x^19/19!;  cos: 1 - x^2/2! + ... + x^20/20!
  static constexpr double ks[9] = {-8.2206352466243295e-18, 2.8114572543455206e-15,
                                   -7.6471637318198164e-13, 1.6059043836821613e-10,
                                   -2.505210838544172e-08,  2.7557319223985893e-06,
                                   -0.00019841269841269841, 0.0083333333333333332,
                                   -0.16666666666666666};
  static constexpr double kc[10] = {4.1103176233121648e-19,  -1.5619206968586225e-16,
                                    4.7794773323873853e-14,  -1.1470745597729725e-11,
                                    2.08767569878681e-09,    -2.7557319223985888e-07,
                                    2.4801587301587302e-05,  -0.0013888888888888889,
                                    0.041666666666666664,    -0.5};
  F64 ps = L::fma(x2, ks[0], ks[1]);
  for (int i = 2; i < 9; ++i) ps = L::fma(ps, x2, ks[i]);
  s = L::fma(x * x2, ps, x);
  F64 pc = L::fma(x2, kc[0], kc[1]);
  for (int i = 2; i < 10; ++i) pc = L::fma(pc, x2, kc[i]);
  c = L::fma(x2, pc, 1.0);
}

// ---------------------------------------------------------------- Box-Muller
// A uniform angle on the circle is built from a uniform angle in [0, pi/4) plus three bits:
// one that swaps cos and sin (reflection about pi/4) and two signs. This keeps the
// polynomials on a short interval with no range reduction, and needs no libm.

template <class L>
FASTINIT_HD void box_muller_f32(typename L::U32 wr, typename L::U32 wa, typename L::F32& z0,
                                typename L::F32& z1) {
  using U32 = typename L::U32;
  using F32 = typename L::F32;
  // Radius: u in (0, 1] with 31 bits, so the smallest u is 2^-32 and |z| reaches 6.66 sigma.
  // Fused: the product is exact (a power of two), so the fma rounds exactly as the add would.
  const F32 u = L::fma(L::cvt_f32(L::as_i32(wr >> 1)), 0x1p-31f, 0x1p-32f);
  // -2 ln(u), the -2 folded into the logarithm's constants (the same bits, one multiply fewer
  // on the longest dependency chain).
  const F32 r = L::sqrt(log_f32<L, 0, -2>(u));
  // Angle in (0, pi/4): 23 bits, offset by half a step.
  // (i + 1/2) * c, fused as i * c + c/2: i + 1/2 is exact and so is c/2 (a power of two
  // times c), so the one rounding applies to the same exact value.
  const F32 phi = L::fma(L::cvt_f32(L::as_i32(wa >> 9)), 0.785398163397448310f * 0x1p-23f,
                         0.785398163397448310f * 0x1p-24f);
  F32 s, c;
  sincos_quarter_f32<L>(phi, s, c);
  // Bit 2 of wa, moved to the sign: a blend reads only the sign of its mask, so the compiler
  // needs no comparison (a test of the bit needed an and and a compare).
  const auto swap = L::as_i32(wa << 29) < 0;
  const F32 x = L::sel(swap, s, c);
  const F32 y = L::sel(swap, c, s);
  z0 = L::from_bits(L::bits(r * x) ^ (wa << 31));  // bit 0 of wa as the sign
  z1 = L::from_bits(L::bits(r * y) ^ ((wa & 2u) << 30));
  (void)sizeof(U32);
}

template <class L>
FASTINIT_HD void box_muller_f64(typename L::U32 w0, typename L::U32 w1, typename L::U32 w2,
                                typename L::U32 w3, typename L::F64& z0, typename L::F64& z1) {
  using U64 = typename L::U64;
  using F64 = typename L::F64;
  // Radius: u in (0, 1] with 53 bits; smallest 2^-53, so |z| reaches 8.57 sigma.
  // (i + 1) * 2^-53 fused (as in box_muller_f32): the product is exact.
  const F64 u = L::fma(L::cvt_f64(L::as_i64(join53<L>(w0, w1))), 0x1p-53, 0x1p-53);
  const F64 r = L::sqrt(log_f64<L>(u) * -2.0);
  // Angle: 52 bits from (w2, w3), control bits from the low bits of w3.
  const U64 ia = (L::widen(w2) << 20) | (L::widen(w3) >> 12);
  const F64 phi = L::fma(L::cvt_f64(L::as_i64(ia)), 0.78539816339744828 * 0x1p-52,
                         0.78539816339744828 * 0x1p-53);
  F64 s, c;
  sincos_quarter_f64<L>(phi, s, c);
  const U64 w3l = L::widen(w3);
  const auto swap = L::as_i64(w3l << 61) < 0;  // bit 2 (see box_muller_f32)
  const F64 x = L::sel(swap, s, c);
  const F64 y = L::sel(swap, c, s);
  z0 = L::from_bits(L::bits(r * x) ^ ((w3l & uint64_t{1}) << 63));
  z1 = L::from_bits(L::bits(r * y) ^ ((w3l & uint64_t{2}) << 62));
}

// ---------------------------------------------------------------- inverse normal CDF
// Lower half only: p in (0, 1/2]. Wichura's AS 241 (Applied Statistics 37, 1988): PPND7
// (relative accuracy ~1e-7) for float32, PPND16 (~1e-16) for float64. Callers mirror the
// upper half (x = -ndtri_lower(1 - p)) with 1 - p computed exactly, so deep tails on either
// side keep full relative accuracy.

// float32: for p > ~0.0017 (|z| < 2.93) Giles' single-precision erfinv polynomial in
// w = -ln(4p(1-p)) ("Approximating the erfinv function", GPU Computing Gems, 2011), which
// needs no division and no branch for the common truncation intervals (|a|, |b| <= 2.9 std);
// below that, Wichura's AS 241 PPND7 tail rationals in r = sqrt(-ln p). Lanes are
// independent: a vector evaluates the tail only when one of its lanes needs it, and every lane
// gets exactly the operations it would get alone, so the bits do not depend on neighbours.
template <class L>
FASTINIT_HD typename L::F32 ndtri_lower_f32(typename L::F32 p) {
  using F32 = typename L::F32;
  // p >= 2^-126 keeps log on normal numbers (callers reject intervals that need less).
  const F32 pp = L::sel(p < 0x1p-126f, L::splat(0x1p-126f), p);
  // w = -ln(4p(1-p)) is used only as w < 5 and w - 2.5, both formed from the logarithm
  // directly (the same exact values before rounding): no negation.
  // ln(4 t), t = pp (1 - pp): (4 pp)(1 - pp) rounds to 4 t exactly, so the 4 goes into the
  // logarithm's exponent (t is normal: when pp is tiny, 1 - pp rounds to 1).
  const F32 lw = log_f32<L, 2>(pp * (1.0f - pp));
  const auto central = lw > -5.0f;
  const F32 wc = -2.5f - lw;
  F32 g = L::fma(wc, 2.81022636e-08f, 3.43273939e-07f);
  g = L::fma(g, wc, -3.5233877e-06f);
  g = L::fma(g, wc, -4.39150654e-06f);
  g = L::fma(g, wc, 0.00021858087f);
  g = L::fma(g, wc, -0.00125372503f);
  g = L::fma(g, wc, -0.00417768164f);
  g = L::fma(g, wc, 0.246640727f);
  g = L::fma(g, wc, 1.50140941f);
  // -sqrt(2) erfinv(1 - 2p); 2p is exact, so the fma rounds 1 - 2p once, as the subtraction did.
  F32 z = (g * L::fma(pp, -2.0f, 1.0f)) * -1.41421356f;
  if (!L::all(central)) {
    const F32 r = L::sqrt(log_f32<L, 0, -1>(pp));
    const auto near = r <= 5.0f;
    const F32 r1 = L::sel(near, r - 1.6f, r - 5.0f);
    const F32 n1 = L::fma(L::fma(L::fma(r1, 0.17023821103f, 1.3067284816f), r1, 2.7568153900f),
                          r1, 1.4234372777f);
    const F32 d1 = L::fma(L::fma(r1, 0.12021132975f, 0.73700164250f), r1, 1.0f);
    const F32 n2 = L::fma(L::fma(L::fma(r1, 0.017337203997f, 0.42868294337f), r1, 3.0812263860f),
                          r1, 6.6579051150f);
    const F32 d2 = L::fma(L::fma(r1, 0.012258202635f, 0.24197894225f), r1, 1.0f);
    const F32 zt = L::sel(near, n1, n2) / L::sel(near, d1, d2);
    z = L::sel(central, z, -zt);
  }
  return z;
}

// Horner evaluation with fused multiply-adds, highest coefficient first.
template <class L, class V, int N>
FASTINIT_HD V horner(V x, const double (&c)[N]) {
  V acc = L::fma(x, c[0], c[1]);
  for (int i = 2; i < N; ++i) acc = L::fma(acc, x, c[i]);
  return acc;
}

template <class L>
FASTINIT_HD typename L::F64 ndtri_lower_f64(typename L::F64 p) {
  using F64 = typename L::F64;
  static constexpr double ka[8] = {2509.0809287301226727, 33430.575583588128105,
                                   67265.770927008700853, 45921.953931549871457,
                                   13731.693765509461125, 1971.5909503065514427,
                                   133.14166789178437745, 3.387132872796366608};
  static constexpr double kb[8] = {5226.495278852854561, 28729.085735721942674,
                                   39307.89580009271061, 21213.794301586595867,
                                   5394.1960214247511077, 687.1870074920579083,
                                   42.313330701600911252, 1.0};
  static constexpr double kc[8] = {7.7454501427834140764e-4, 0.0227238449892691845833,
                                   0.24178072517745061177,   1.27045825245236838258,
                                   3.64784832476320460504,   5.7694972214606914055,
                                   4.6303378461565452959,    1.42343711074968357734};
  static constexpr double kd[8] = {1.05075007164441684324e-9, 5.475938084995344946e-4,
                                   0.0151986665636164571966,  0.14810397642748007459,
                                   0.68976733498510000455,    1.6763848301838038494,
                                   2.05319162663775882187,    1.0};
  static constexpr double ke[8] = {2.01033439929228813265e-7, 2.71155556874348757815e-5,
                                   0.0012426609473880784386,  0.026532189526576123093,
                                   0.29656057182850489123,    1.7848265399172913358,
                                   5.4637849111641143699,     6.6579046435011037772};
  static constexpr double kf[8] = {2.04426310338993978564e-15, 1.4215117583164458887e-7,
                                   1.8463183175100546818e-5,   7.868691311456132591e-4,
                                   0.0148753612908506148525,   0.13692988092273580531,
                                   0.59983220655588793769,     1.0};
  const F64 q = p - 0.5;
  const auto central = q >= -0.425;
  const F64 rc = 0.180625 - q * q;
  F64 num = q * horner<L>(rc, ka);
  F64 den = horner<L>(rc, kb);
  if (!L::all(central)) {
    const F64 pp = L::sel(p < 0x1p-1022, L::splat(0x1p-1022), p);
    const F64 r = L::sqrt(-log_f64<L>(pp));
    const auto near = r <= 5.0;
    const F64 r1 = L::sel(near, r - 1.6, r - 5.0);
    F64 nt, dt;
    if (L::all(central | near)) {
      nt = horner<L>(r1, kc);
      dt = horner<L>(r1, kd);
    } else {
      nt = L::sel(near, horner<L>(r1, kc), horner<L>(r1, ke));
      dt = L::sel(near, horner<L>(r1, kd), horner<L>(r1, kf));
    }
    num = L::sel(central, num, nt);
    den = L::sel(central, den, dt);
  }
  const F64 z = num / den;
  return L::sel(central, z, -z);
}

// ---------------------------------------------------------------- truncated normal
// z = Phi^-1(p) for p uniform on [Phi(alpha), Phi(beta)], evaluated so that neither tail loses
// precision: p = PL + u D and 1 - p = QU + (1 - u) D are both formed from small quantities
// (PL = Phi(alpha), QU = Phi(-beta), D = Phi(beta) - Phi(alpha), all from the host), and the
// smaller of the two is inverted.
template <class L>
FASTINIT_HD typename L::F32 trunc_std_f32(typename L::F32 u, float pl, float qu, float d) {
  using F32 = typename L::F32;
  const F32 p = L::fma(u, d, pl);
  const F32 q = L::fma(1.0f - u, d, qu);
  const auto lower = p <= q;
  const F32 z = ndtri_lower_f32<L>(L::sel(lower, p, q));
  return L::sel(lower, z, -z);
}

template <class L>
FASTINIT_HD typename L::F64 trunc_std_f64(typename L::F64 u, double pl, double qu, double d) {
  using F64 = typename L::F64;
  const F64 p = L::fma(u, d, pl);
  const F64 q = L::fma(1.0 - u, d, qu);
  const auto lower = p <= q;
  const F64 z = ndtri_lower_f64<L>(L::sel(lower, p, q));
  return L::sel(lower, z, -z);
}

// ---------------------------------------------------------------- rounding to 16-bit types
// Round to nearest even, bit-exact with numpy/ml_dtypes and torch conversions for finite input
// and infinities. NaN is not handled (no fill computes one from valid parameters; a NaN would
// come out as an infinity): host code that may see one converts it itself (fill.cpp, bits16).

// The bfloat16 bits in the high 16 bits of each lane (the low 16 are junk), for output paths
// that can take them from there without the shift.
template <class L>
FASTINIT_HD typename L::U32 f32_to_bf16_bits_high(typename L::F32 x) {
  const typename L::U32 b = L::bits(x);
  return b + (0x7FFFu + ((b >> 16) & 1u));
}

template <class L>
FASTINIT_HD typename L::U32 f32_to_bf16_bits(typename L::F32 x) {
  return f32_to_bf16_bits_high<L>(x) >> 16;
}

template <class L>
FASTINIT_HD typename L::U32 f32_to_f16_bits(typename L::F32 x) {
  using U32 = typename L::U32;
  const U32 b = L::bits(x);
  const U32 sign = (b >> 16) & 0x8000u;
  const U32 a = b & 0x7FFFFFFFu;
  // Normal range: rebias the exponent (127 -> 15) and round away 13 mantissa bits.
  const U32 t = a - 0x38000000u;
  const U32 normal = (t + (0x0FFFu + ((t >> 13) & 1u))) >> 13;
  // Subnormal range: adding 0.5 aligns the value to a multiple of 2^-24, and the FPU rounds
  // to nearest even; the low bits are then the half-precision subnormal significand.
  const U32 sub = L::bits(L::from_bits(a) + 0.5f) - 0x3F000000u;
  U32 h = L::sel(a >= 0x38800000u, normal, sub);
  h = L::sel(a >= 0x477FF000u, a * 0u + 0x7C00u, h);  // overflow to infinity
  return h | sign;
}

FASTINIT_KERNEL_NS_END
