// A writable strided view of a caller's buffer (NumPy array or DLPack capsule), with the
// ownership rules of each protocol handled in one place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastinit/params.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

struct BufferView {
  char* data = nullptr;  // address of the element with all indices 0
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements, may be negative for NumPy views
  int32_t device_type = 1;       // DLPack device type (1 = CPU)
  int32_t device_id = 0;
  // Keeps the producer's memory alive and returns it (DLPack deleter) exactly once.
  std::shared_ptr<void> owner;

  int64_t size() const;
  int ndim() const { return static_cast<int>(shape.size()); }
};

// Accepts a NumPy array or a DLPack capsule ("dltensor" / "dltensor_versioned"). Raises
// TypeError for unsupported dtypes, ValueError/BufferError for read-only or overlapping
// buffers. Never writes to the buffer.
BufferView acquire_buffer(py::handle obj);

// The sub-box of a global tensor that a buffer holds.
struct Shard {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> global_offset;
};

// Validates global_shape/global_offset against the buffer (ValueError) and fills in the
// defaults (the buffer is the whole tensor).
Shard make_shard(const BufferView& b, const py::object& global_shape,
                 const py::object& global_offset);

std::string dtype_name(DType t);

}  // namespace fastinit
