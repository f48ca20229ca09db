// The element types fastinit writes, and the host-side rounding helpers that the parameter
// setup of every distribution (distributions.hpp) needs. Defined in fill.cpp.
#pragma once

#include <string>

namespace fastinit {

enum class DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

inline int dtype_size(DType t) { return t == DType::F64 ? 8 : (t == DType::F32 ? 4 : 2); }
inline bool dtype_is_32bit_class(DType t) { return t != DType::F64; }

std::string dtype_name(DType t);
// The value a double takes when stored in the dtype (round to nearest even), as a double.
double round_to_dtype(double x, DType t);
// The smallest value of the dtype >= x, and the largest <= x.
double ceil_to_dtype(double x, DType t);
double floor_to_dtype(double x, DType t);

}  // namespace fastinit
