// The values of one Philox block for one (distribution, dtype class): the single definition
// of the mapping from a block's four words to its elements, used by the CPU kernels
// (kernel_cpu.hpp, on SIMD lane sets) and the CUDA kernels (cuda/block_values.cuh, on the
// scalar lane set). Block b of the (key, stream) sequence gives elements [b*E, b*E + E) of the
// logical tensor (E = 4 for the 32-bit class, 2 for float64).
#pragma once

#include "fastinit/config.hpp"
#include "fastinit/params.hpp"
#include "fastinit/transforms.hpp"

FASTINIT_KERNEL_NS_BEGIN

// Pre-rounding float32 values of a block's four words (the 32-bit class).
template <class L, Dist D>
FASTINIT_HD void block_y_f32(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                             typename L::U32 x2, typename L::U32 x3, typename L::F32 (&y)[4]) {
  if constexpr (D == Dist::Uniform) {
    y[0] = L::fma(unit_f32<L>(x0), P.f[1], P.f[0]);
    y[1] = L::fma(unit_f32<L>(x1), P.f[1], P.f[0]);
    y[2] = L::fma(unit_f32<L>(x2), P.f[1], P.f[0]);
    y[3] = L::fma(unit_f32<L>(x3), P.f[1], P.f[0]);
  } else if constexpr (D == Dist::Normal) {
    box_muller_f32<L>(x0, x1, y[0], y[1]);
    box_muller_f32<L>(x2, x3, y[2], y[3]);
    for (int k = 0; k < 4; ++k) y[k] = L::fma(y[k], P.f[1], P.f[0]);
  } else {
    y[0] = L::fma(trunc_std_f32<L>(unit_open_f32<L>(x0), P.f[4], P.f[5], P.f[6]), P.f[1], P.f[0]);
    y[1] = L::fma(trunc_std_f32<L>(unit_open_f32<L>(x1), P.f[4], P.f[5], P.f[6]), P.f[1], P.f[0]);
    y[2] = L::fma(trunc_std_f32<L>(unit_open_f32<L>(x2), P.f[4], P.f[5], P.f[6]), P.f[1], P.f[0]);
    y[3] = L::fma(trunc_std_f32<L>(unit_open_f32<L>(x3), P.f[4], P.f[5], P.f[6]), P.f[1], P.f[0]);
  }
  // Uniform fills skip the clamp when the host proved it cannot act (P.f[4] == 0): the
  // transform is monotonic in u, so checking u = 0 and the largest u suffices.
  if (D == Dist::TruncNormal || (D == Dist::Uniform && P.f[4] != 0.0f)) {
    const auto lo = L::splat(P.f[2]), hi = L::splat(P.f[3]);
    for (int k = 0; k < 4; ++k) {
      y[k] = L::sel(y[k] < lo, lo, y[k]);
      y[k] = L::sel(y[k] > hi, hi, y[k]);
    }
  }
}

// float64 values of a block: element 0 from words (0, 1), element 1 from words (2, 3).
template <class L, Dist D>
FASTINIT_HD void block_y_f64(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                             typename L::U32 x2, typename L::U32 x3, typename L::F64& y0,
                             typename L::F64& y1) {
  if constexpr (D == Dist::Uniform) {
    y0 = L::fma(unit_f64<L>(x0, x1), P.d[1], P.d[0]);
    y1 = L::fma(unit_f64<L>(x2, x3), P.d[1], P.d[0]);
  } else if constexpr (D == Dist::Normal) {
    typename L::F64 z0, z1;
    box_muller_f64<L>(x0, x1, x2, x3, z0, z1);
    y0 = L::fma(z0, P.d[1], P.d[0]);
    y1 = L::fma(z1, P.d[1], P.d[0]);
  } else {
    y0 = L::fma(trunc_std_f64<L>(unit_open_f64<L>(x0, x1), P.d[4], P.d[5], P.d[6]), P.d[1], P.d[0]);
    y1 = L::fma(trunc_std_f64<L>(unit_open_f64<L>(x2, x3), P.d[4], P.d[5], P.d[6]), P.d[1], P.d[0]);
  }
  if (D == Dist::TruncNormal || (D == Dist::Uniform && P.d[4] != 0.0)) {
    const auto lo = L::splat(P.d[2]), hi = L::splat(P.d[3]);
    y0 = L::sel(y0 < lo, lo, y0);
    y0 = L::sel(y0 > hi, hi, y0);
    y1 = L::sel(y1 < lo, lo, y1);
    y1 = L::sel(y1 > hi, hi, y1);
  }
}

FASTINIT_KERNEL_NS_END
