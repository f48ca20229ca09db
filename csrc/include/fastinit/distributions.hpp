// The distributions, each declared once and completely here: its name and arguments as the
// Python layer passes them, its named kernel parameters, the host setup that validates the
// arguments and computes those parameters, and the mapping of a Philox block's four words to
// its elements. Everything else (FillParams, the kernel selection on CPU and CUDA, the
// by-name lookup of the bindings) is generated from FASTINIT_DISTRIBUTIONS at the end.
//
// Adding a distribution: a struct like the ones below, its two block_* overloads, and a line
// in the table (plus a transform in transforms.hpp if it needs a new one). Forgetting the
// block overloads, a table line or a field fails to compile; no switch is written by hand.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "fastinit/config.hpp"
#include "fastinit/dtype.hpp"
#include "fastinit/transforms.hpp"

namespace fastinit {

namespace setup_detail {

// The bounds [lo, hi] rounded inwards to the dtype (the values a fill may produce).
inline void clamp_bounds(DType t, double lo, double hi, const char* what, double& lo_c,
                         double& hi_c) {
  lo_c = ceil_to_dtype(lo, t);
  hi_c = floor_to_dtype(hi, t);
  if (!(lo_c <= hi_c))
    throw std::invalid_argument(std::string("fastinit: no ") + dtype_name(t) + " value lies in " +
                                what + " [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// The 32-bit and 16-bit dtypes compute in float32: a mean or std beyond its range would become
// an infinity there (and the values infinities or NaN), so it is refused, as uniform_ refuses a
// range that overflows.
inline void check_narrow(DType t, float mean, float std, const char* what) {
  if (t != DType::F64 && (std::isinf(mean) || std::isinf(std)))
    throw std::invalid_argument(std::string("fastinit: ") + what + " mean and std must lie within " +
                                "float32's range for a " + dtype_name(t) +
                                " fill (it computes in float32); fill a float64 buffer instead");
}

// Phi(x) for the host-side setup; erfc keeps full relative accuracy in the lower tail.
inline double ndtr(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

}  // namespace setup_detail

// uniform(low, high): fma(u, high - low, low), u in [0, 1), clamped to [low, high] as rounded.
struct UniformDist {
  static constexpr const char* name = "uniform";
  static constexpr int nargs = 2;  // low, high
  template <class S>
  struct Params {
    S low, span;  // y = fma(u, span, low)
    S lo, hi;     // the clamp: low and high rounded inwards to the dtype
    bool clamp;   // false when the host proved the clamp cannot act (the kernels skip it)
    // u = i * 2^-b exactly (i an integer of b bits, b = 24 or 53), so when step = span * 2^-b
    // is exact, fma(i, step, low) is the same real number rounded once: the same bits as
    // fma(u, span, low), one multiply fewer per element. step must also be normal (or zero):
    // a subnormal step would read as zero under flush-to-zero modes (x86 DAZ, as
    // torch.set_flush_denormal sets; Arm FPCR.FZ) that leave the other form's normal operands
    // alone. So a span below 2^-102 (float) or 2^-969 (double) keeps the other form.
    S step;
    bool exact_step;
  };
  static void setup(DType t, const double* a, Params<float>& f, Params<double>& d) {
    const double low = a[0], high = a[1];
    if (!std::isfinite(low) || !std::isfinite(high) || !(low <= high))
      throw std::invalid_argument("fastinit: uniform_ needs finite low <= high");
    f.low = static_cast<float>(low);
    f.span = static_cast<float>(high - low);
    d.low = low;
    d.span = high - low;
    if (!std::isfinite(d.span) || (t != DType::F64 && !std::isfinite(f.span)))
      throw std::invalid_argument("fastinit: uniform_ range high - low overflows");
    setup_detail::clamp_bounds(t, low, high, "the uniform range", d.lo, d.hi);
    f.lo = static_cast<float>(d.lo);
    f.hi = static_cast<float>(d.hi);
    // Whether the clamp can ever act: y = fma(u, span, low) is monotonic in u, so its extremes
    // are at u = 0 (y = low) and at the largest u of each dtype class.
    const float max_f = std::fma(1.0f - 0x1p-24f, f.span, f.low);
    f.clamp = !(f.low >= f.lo && max_f <= f.hi);
    const double max_d = std::fma(1.0 - 0x1p-53, d.span, d.low);
    d.clamp = !(d.low >= d.lo && max_d <= d.hi);
    f.step = f.span * 0x1p-24f;
    f.exact_step = std::ldexp(f.step, 24) == f.span && (f.step == 0 || std::isnormal(f.step));
    d.step = d.span * 0x1p-53;
    d.exact_step = std::ldexp(d.step, 53) == d.span && (d.step == 0 || std::isnormal(d.step));
  }
};

// normal(mean, std): Box-Muller on word pairs of the block.
struct NormalDist {
  static constexpr const char* name = "normal";
  static constexpr int nargs = 2;  // mean, std
  template <class S>
  struct Params {
    S mean, std;
  };
  static void setup(DType t, const double* a, Params<float>& f, Params<double>& d) {
    const double mean = a[0], std = a[1];
    if (!std::isfinite(mean) || !std::isfinite(std) || std < 0)
      throw std::invalid_argument("fastinit: normal_ needs a finite mean and a finite std >= 0");
    f.mean = static_cast<float>(mean);
    f.std = static_cast<float>(std);
    setup_detail::check_narrow(t, f.mean, f.std, "normal_");
    d.mean = mean;
    d.std = std;
  }
};

// trunc_normal(mean, std, a, b), a and b absolute: inverse CDF of one word (two for float64).
struct TruncNormalDist {
  static constexpr const char* name = "trunc_normal";
  static constexpr int nargs = 4;  // mean, std, a, b
  template <class S>
  struct Params {
    S mean, std;
    S lo, hi;         // the clamp: a and b rounded inwards to the dtype
    S pl, qu, mass;   // Phi(alpha), Phi(-beta) and the mass of [alpha, beta] (std units)
  };
  static void setup(DType t, const double* args, Params<float>& f, Params<double>& d) {
    using setup_detail::ndtr;
    const double mean = args[0], std = args[1], a = args[2], b = args[3];
    if (!std::isfinite(mean) || !std::isfinite(std) || !(std > 0))
      throw std::invalid_argument("fastinit: trunc_normal_ needs a finite mean and a finite std > 0");
    if (std::isnan(a) || std::isnan(b) || !(a < b))
      throw std::invalid_argument("fastinit: trunc_normal_ needs a < b (got a=" +
                                  std::to_string(a) + ", b=" + std::to_string(b) + ")");
    const double alpha = (a - mean) / std, beta = (b - mean) / std;
    const double pl = ndtr(alpha), qu = ndtr(-beta);
    // The mass of [alpha, beta], formed from the two small tails where it matters.
    double mass;
    if (beta <= 0) mass = ndtr(beta) - pl;
    else if (alpha >= 0) mass = ndtr(-alpha) - qu;
    else mass = 1.0 - pl - qu;
    const bool narrow = t != DType::F64;
    const double min_mass = narrow ? 0x1p-100 : 0x1p-1000;
    if (!(mass >= min_mass))
      throw std::invalid_argument(
          "fastinit: the truncation interval [" + std::to_string(alpha) + ", " +
          std::to_string(beta) + "] (in std units) has too little normal probability mass for " +
          dtype_name(t) + " arithmetic" + (narrow ? "; fill a float64 buffer instead" : ""));
    f.mean = static_cast<float>(mean);
    f.std = static_cast<float>(std);
    setup_detail::check_narrow(t, f.mean, f.std, "trunc_normal_");
    f.pl = static_cast<float>(pl);
    f.qu = static_cast<float>(qu);
    f.mass = static_cast<float>(mass);
    d.mean = mean;
    d.std = std;
    d.pl = pl;
    d.qu = qu;
    d.mass = mass;
    setup_detail::clamp_bounds(t, a, b, "the truncation interval", d.lo, d.hi);
    f.lo = static_cast<float>(d.lo);
    f.hi = static_cast<float>(d.hi);
  }
};

}  // namespace fastinit

// The table: X(enumerator of Dist, struct, member of FillParams::f / ::d). Its order is not
// part of the stream contract (the Python layer passes names).
#define FASTINIT_DISTRIBUTIONS(X)     \
  X(Uniform, UniformDist, uniform)    \
  X(Normal, NormalDist, normal)       \
  X(TruncNormal, TruncNormalDist, trunc_normal)

// --- The block mappings, on any lane set L (internal linkage: compiled once per ISA). Block
//     b gives elements [b*4, b*4 + 4) in the 32-bit class (word k -> element k, before
//     rounding to the dtype) and [b*2, b*2 + 2) in float64 (words (0, 1) -> element 0,
//     (2, 3) -> element 1). These are frozen: golden tests pin them bit for bit.
FASTINIT_KERNEL_NS_BEGIN

// Whether lane set L names L::Wide, a set whose vectors are two of L's. AVX2's paired lanes do
// (lanes_avx2.hpp): normal and trunc_normal then evaluate two words of a block as one value,
// four independent 256-bit dependency chains per operation instead of two. Their transforms
// are long chains (a division, Horner polynomials, 5-cycle fused multiply-adds on Zen), and
// the out-of-order window did not reach far enough down the next word's code to overlap them:
// measured on Zen 2, trunc_normal_ 0.86x and normal_ 0.97x the time. Every lane still gets
// exactly the operations it would get alone, so the bits do not change.
template <class L, class = void>
struct HasWide : std::false_type {};
template <class L>
struct HasWide<L, std::void_t<typename L::Wide>> : std::true_type {};

template <class L, class V, class S, int N>
FASTINIT_HD void clamp_values(V (&y)[N], S lo, S hi) {
  const auto l = L::splat(lo), h = L::splat(hi);
  // Unrolled so the values stay in registers (a loop made GCC keep them on the stack).
#if !defined(__CUDACC__)
#pragma GCC unroll 4
#endif
  for (int k = 0; k < N; ++k) {
    y[k] = L::sel(y[k] < l, l, y[k]);
    y[k] = L::sel(y[k] > h, h, y[k]);
  }
}

template <class L>
FASTINIT_HD void block_f32(const UniformDist::Params<float>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F32 (&y)[4]) {
  if (p.exact_step) {
    y[0] = L::fma(unit_int_f32<L>(x0), p.step, p.low);
    y[1] = L::fma(unit_int_f32<L>(x1), p.step, p.low);
    y[2] = L::fma(unit_int_f32<L>(x2), p.step, p.low);
    y[3] = L::fma(unit_int_f32<L>(x3), p.step, p.low);
  } else {
    y[0] = L::fma(unit_f32<L>(x0), p.span, p.low);
    y[1] = L::fma(unit_f32<L>(x1), p.span, p.low);
    y[2] = L::fma(unit_f32<L>(x2), p.span, p.low);
    y[3] = L::fma(unit_f32<L>(x3), p.span, p.low);
  }
  if (p.clamp) clamp_values<L>(y, p.lo, p.hi);
}
template <class L>
FASTINIT_HD void block_f64(const UniformDist::Params<double>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F64 (&y)[2]) {
  if (p.exact_step) {
    y[0] = L::fma(unit_int_f64<L>(x0, x1), p.step, p.low);
    y[1] = L::fma(unit_int_f64<L>(x2, x3), p.step, p.low);
  } else {
    y[0] = L::fma(unit_f64<L>(x0, x1), p.span, p.low);
    y[1] = L::fma(unit_f64<L>(x2, x3), p.span, p.low);
  }
  if (p.clamp) clamp_values<L>(y, p.lo, p.hi);
}

template <class L>
FASTINIT_HD void block_f32(const NormalDist::Params<float>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F32 (&y)[4]) {
  if constexpr (HasWide<L>::value) {
    // Pairs (w0, w1) and (w2, w3) as one Box-Muller pair: z0 = (y0, y2), z1 = (y1, y3).
    using W = typename L::Wide;
    typename W::F32 z0, z1;
    box_muller_f32<W>(typename W::U32{x0, x2}, typename W::U32{x1, x3}, z0, z1);
    y[0] = z0.lo;
    y[1] = z1.lo;
    y[2] = z0.hi;
    y[3] = z1.hi;
  } else {
    box_muller_f32<L>(x0, x1, y[0], y[1]);
    box_muller_f32<L>(x2, x3, y[2], y[3]);
  }
  for (int k = 0; k < 4; ++k) y[k] = L::fma(y[k], p.std, p.mean);
}
template <class L>
FASTINIT_HD void block_f64(const NormalDist::Params<double>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F64 (&y)[2]) {
  typename L::F64 z0, z1;
  box_muller_f64<L>(x0, x1, x2, x3, z0, z1);
  y[0] = L::fma(z0, p.std, p.mean);
  y[1] = L::fma(z1, p.std, p.mean);
}

// One word's trunc_normal value before clamping.
template <class L>
FASTINIT_HD typename L::F32 trunc_value_f32(const TruncNormalDist::Params<float>& p,
                                            typename L::U32 x) {
  return L::fma(trunc_std_f32<L>(unit_open_f32<L>(x), p.pl, p.qu, p.mass), p.std, p.mean);
}
template <class L>
FASTINIT_HD void block_f32(const TruncNormalDist::Params<float>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F32 (&y)[4]) {
  if constexpr (HasWide<L>::value) {
    using W = typename L::Wide;
    const typename W::F32 a = trunc_value_f32<W>(p, {x0, x1});
    const typename W::F32 b = trunc_value_f32<W>(p, {x2, x3});
    y[0] = a.lo;
    y[1] = a.hi;
    y[2] = b.lo;
    y[3] = b.hi;
  } else {
    y[0] = trunc_value_f32<L>(p, x0);
    y[1] = trunc_value_f32<L>(p, x1);
    y[2] = trunc_value_f32<L>(p, x2);
    y[3] = trunc_value_f32<L>(p, x3);
  }
  clamp_values<L>(y, p.lo, p.hi);
}
template <class L>
FASTINIT_HD void block_f64(const TruncNormalDist::Params<double>& p, typename L::U32 x0,
                           typename L::U32 x1, typename L::U32 x2, typename L::U32 x3,
                           typename L::F64 (&y)[2]) {
  y[0] = L::fma(trunc_std_f64<L>(unit_open_f64<L>(x0, x1), p.pl, p.qu, p.mass), p.std, p.mean);
  y[1] = L::fma(trunc_std_f64<L>(unit_open_f64<L>(x2, x3), p.pl, p.qu, p.mass), p.std, p.mean);
  clamp_values<L>(y, p.lo, p.hi);
}

FASTINIT_KERNEL_NS_END
