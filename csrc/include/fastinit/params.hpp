// Plain-old-data description of one fill, computed once on the host and handed unchanged to
// every kernel (CPU or CUDA), so that both devices start from identical parameters.
#pragma once

#include <cstdint>

namespace fastinit {

enum class DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

enum class Dist : int { Uniform = 0, Normal = 1, TruncNormal = 2 };

inline int dtype_size(DType t) { return t == DType::F64 ? 8 : (t == DType::F32 ? 4 : 2); }
inline bool dtype_is_32bit_class(DType t) { return t != DType::F64; }

struct FillParams {
  Dist dist;
  DType dtype;
  uint64_t key;     // the seed
  uint64_t stream;  // counter words 2 and 3
  // 32-bit class (float32 computations; results rounded to the 16-bit types when needed).
  //   Uniform:      f[0] = low, f[1] = high - low, f[2..3] = clamp bounds, f[4] = 1 if the
  //                 clamp can act (else the kernels skip it)
  //   Normal:       f[0] = mean, f[1] = std
  //   TruncNormal:  f[0] = mean, f[1] = std, f[2..3] = clamp bounds, f[4] = PL, f[5] = QU, f[6] = D
  float f[8];
  // 64-bit class, same layout in double precision.
  double d[8];
};

}  // namespace fastinit
