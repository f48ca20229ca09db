// A writable strided view of a caller's buffer, and the shard of a global tensor it holds:
// plain C++, so that the fills and the orthogonal code compile without the Python headers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fastinit/dlpack.hpp"
#include "fastinit/params.hpp"

namespace fastinit {

struct BufferView {
  char* data = nullptr;  // address of the element with all indices 0
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements, may be negative for NumPy views
  int32_t device_type = kDLCPU;  // DLPack device type
  int32_t device_id = 0;
  // Keeps the producer's memory alive and returns it (DLPack deleter) exactly once.
  std::shared_ptr<void> owner;

  // The element count; acquire_buffer checked that it fits in int64_t.
  int64_t size() const {
    for (int64_t s : shape)
      if (s == 0) return 0;
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  int ndim() const { return static_cast<int>(shape.size()); }
};

// The sub-box of a global tensor that a buffer holds.
struct Shard {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> global_offset;
};

}  // namespace fastinit
