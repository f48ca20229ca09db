// Plain-old-data description of one fill, computed once on the host and handed unchanged to
// every kernel (CPU or CUDA), so that both devices start from identical parameters; and the
// one place that turns a run-time (distribution, dtype) pair into compile-time code.
#pragma once

#include <cstdint>

#include "fastinit/config.hpp"
#include "fastinit/distributions.hpp"
#include "fastinit/dtype.hpp"

namespace fastinit {

// The distribution ids, from the table in distributions.hpp.
enum class Dist : int {
#define FASTINIT_X(E, T, m) E,
  FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X
};

// The named parameters of every distribution in one precision (float for the 32-bit class,
// double for float64); only the member of FillParams::dist is set, the others stay zero.
template <class S>
struct DistParamSet {
#define FASTINIT_X(E, T, m) typename T::template Params<S> m;
  FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X
};

struct FillParams {
  Dist dist;
  DType dtype;
  uint64_t key;     // the seed
  uint64_t stream;  // counter words 2 and 3
  DistParamSet<float> f;   // the 32-bit class (float16/bfloat16 are computed in float32)
  DistParamSet<double> d;  // float64
};

// Compile-time stand-ins for a distribution and a dtype, handed to the visitors' callbacks.
template <Dist D>
struct DistTag {
  static constexpr Dist value = D;
};
template <DType T>
struct DTypeTag {
  static constexpr DType value = T;
};

// Out of line (fill.cpp), so that the per-ISA kernel objects instantiate no library code.
[[noreturn]] void throw_unknown_dist(int id);
[[noreturn]] void throw_unknown_dtype(int id);

// f(DistTag<d>{}). The cases come from the distribution table, and the switch has no default:
// with -Werror=switch a Dist without a case does not compile, and an id outside the enum
// (a corrupted FillParams) throws std::invalid_argument instead of doing nothing.
template <class F>
decltype(auto) visit_dist(Dist d, F&& f) {
  switch (d) {
#define FASTINIT_X(E, T, m) \
  case Dist::E:             \
    return f(DistTag<Dist::E>{});
    FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X
  }
  throw_unknown_dist(static_cast<int>(d));
}

template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(DTypeTag<DType::F32>{});
    case DType::F64: return f(DTypeTag<DType::F64>{});
    case DType::F16: return f(DTypeTag<DType::F16>{});
    case DType::BF16: return f(DTypeTag<DType::BF16>{});
  }
  throw_unknown_dtype(static_cast<int>(t));
}

// f(DistTag<d>{}, DTypeTag<t>{}): every kernel selection (CPU fill_range, CUDA launch and its
// host emulation) goes through here.
template <class F>
decltype(auto) visit_fill(Dist d, DType t, F&& f) {
  return visit_dist(d, [&](auto D) -> decltype(auto) {
    return visit_dtype(t, [&](auto T) -> decltype(auto) { return f(D, T); });
  });
}

}  // namespace fastinit
