// The values of one Philox block for one (distribution, dtype class): the single entry point
// to the mapping from a block's four words to its elements, used by the CPU kernels
// (kernel_cpu.hpp, on SIMD lane sets) and the CUDA kernels (cuda/block_values.cuh, on the
// scalar lane set). Each distribution's mapping is its block_f32/block_f64 overload in
// distributions.hpp, chosen by the type of its parameters: a distribution without one does
// not compile. Block b of the (key, stream) sequence gives elements [b*E, b*E + E) of the
// logical tensor (E = 4 for the 32-bit class, 2 for float64).
#pragma once

#include "fastinit/config.hpp"
#include "fastinit/distributions.hpp"
#include "fastinit/params.hpp"
#include "fastinit/transforms.hpp"

FASTINIT_KERNEL_NS_BEGIN

// The parameters of distribution D in one precision (generated from the table).
#define FASTINIT_X(E, T, m)                                                                     \
  template <class S>                                                                            \
  FASTINIT_HD const typename T::template Params<S>& params_of(DistTag<Dist::E>,                 \
                                                              const DistParamSet<S>& set) {     \
    return set.m;                                                                               \
  }
FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X

// Pre-rounding float32 values of a block's four words (the 32-bit class).
template <class L, Dist D>
FASTINIT_HD void block_y_f32(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                             typename L::U32 x2, typename L::U32 x3, typename L::F32 (&y)[4]) {
  block_f32<L>(params_of(DistTag<D>{}, P.f), x0, x1, x2, x3, y);
}

// float64 values of a block: element 0 from words (0, 1), element 1 from words (2, 3).
template <class L, Dist D>
FASTINIT_HD void block_y_f64(const FillParams& P, typename L::U32 x0, typename L::U32 x1,
                             typename L::U32 x2, typename L::U32 x3, typename L::F64& y0,
                             typename L::F64& y1) {
  typename L::F64 y[2];
  block_f64<L>(params_of(DistTag<D>{}, P.d), x0, x1, x2, x3, y);
  y0 = y[0];
  y1 = y[1];
}

FASTINIT_KERNEL_NS_END
