// A writable strided view of a caller's buffer (NumPy array or DLPack capsule), with the
// ownership rules of each protocol handled in one place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastinit/config.hpp"
#include "fastinit/dlpack.hpp"
#include "fastinit/params.hpp"
#include "fastinit/prelude.hpp"

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

  int64_t size() const;
  int ndim() const { return static_cast<int>(shape.size()); }
};

// Accepts a NumPy array or a DLPack capsule ("dltensor" / "dltensor_versioned"). Raises
// TypeError for unsupported dtypes, ValueError/BufferError for read-only or overlapping
// buffers. Never writes to the buffer.
FASTINIT_CORE_API BufferView acquire_buffer(py::handle obj);

// The sub-box of a global tensor that a buffer holds.
struct Shard {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> global_offset;
};

// Validates global_shape/global_offset against the buffer (ValueError) and fills in the
// defaults (the buffer is the whole tensor).
FASTINIT_CORE_API Shard make_shard(const BufferView& b, const py::object& global_shape,
                 const py::object& global_offset);

// Raises BufferError unless the CPU can address the buffer's memory (DLPack CPU, CUDA-host
// or CUDA-managed memory); `who` names the caller in the message.
FASTINIT_CORE_API void require_host_memory(const BufferView& b, const char* who);

}  // namespace fastinit
