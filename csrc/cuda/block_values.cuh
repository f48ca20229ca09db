// The stored bits of one Philox block on the scalar lane set (one CUDA thread's work). The
// values come from block_y_f32/block_y_f64 (fastinit/block_values.hpp), the definition the CPU
// kernels use too; tests/test_cuda.py also runs this on the CPU (the kernels' host emulation)
// against the CPU kernels bit for bit.
#pragma once

#include <cstdint>

#include "fastinit/block_values.hpp"
#include "fastinit/config.hpp"
#include "fastinit/lanes_scalar.hpp"
#include "fastinit/params.hpp"
#include "fastinit/philox.hpp"
#include "fastinit/transforms.hpp"

FASTINIT_KERNEL_NS_BEGIN

// Elements per Philox block and the stored bit pattern of a dtype.
template <DType T>
struct DTypeTraits {
  static constexpr int kPerBlock = 4;
  using Bits = uint16_t;  // float16, bfloat16
};
template <>
struct DTypeTraits<DType::F32> {
  static constexpr int kPerBlock = 4;
  using Bits = uint32_t;
};
template <>
struct DTypeTraits<DType::F64> {
  static constexpr int kPerBlock = 2;
  using Bits = uint64_t;
};

// The stored bits of the elements of Philox block `block` (one CUDA thread's work).
template <Dist D, DType T>
FASTINIT_HD void block_values(const FillParams& P, uint64_t block,
                              typename DTypeTraits<T>::Bits (&out)[DTypeTraits<T>::kPerBlock]) {
  using L = ScalarLanes;
  // Counter (block low, block high, stream low, stream high), key (seed low, seed high).
  uint32_t x0 = static_cast<uint32_t>(block), x1 = static_cast<uint32_t>(block >> 32);
  uint32_t x2 = static_cast<uint32_t>(P.stream), x3 = static_cast<uint32_t>(P.stream >> 32);
  philox4x32_10<L>(x0, x1, x2, x3, static_cast<uint32_t>(P.key),
                   static_cast<uint32_t>(P.key >> 32));
  if constexpr (T == DType::F64) {
    double y0, y1;
    block_y_f64<L, D>(P, x0, x1, x2, x3, y0, y1);
    out[0] = L::bits(y0);
    out[1] = L::bits(y1);
  } else {
    float y[4];
    block_y_f32<L, D>(P, x0, x1, x2, x3, y);
    for (int k = 0; k < 4; ++k) {
      if constexpr (T == DType::F32)
        out[k] = L::bits(y[k]);
      else if constexpr (T == DType::BF16)
        out[k] = static_cast<uint16_t>(f32_to_bf16_bits<L>(y[k]));
      else
        out[k] = static_cast<uint16_t>(f32_to_f16_bits<L>(y[k]));
    }
  }
}

FASTINIT_KERNEL_NS_END
