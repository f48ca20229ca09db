// Buffers from Python objects (NumPy arrays, DLPack capsules), with the ownership rules of
// each protocol handled in one place. The view itself is in buffer_view.hpp, free of Python
// headers, for the code that only loops over it.
#pragma once

#include <string>

#include "fastinit/buffer_view.hpp"
#include "fastinit/config.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

// Accepts a NumPy array or a DLPack capsule ("dltensor" / "dltensor_versioned"). Raises
// TypeError for unsupported dtypes, ValueError/BufferError for read-only or overlapping
// buffers. Never writes to the buffer.
FASTINIT_CORE_API BufferView acquire_buffer(py::handle obj);

// Validates global_shape/global_offset against the buffer (ValueError) and fills in the
// defaults (the buffer is the whole tensor).
FASTINIT_CORE_API Shard make_shard(const BufferView& b, py::handle global_shape,
                                   py::handle global_offset);

// A random fill's `key` argument: an int, or a callable returning one. The bindings call this
// after every check of the call has passed and before anything is written, so a callable is
// called exactly once, and only for a call that will write: fastinit.torch passes one that
// draws the seed from torch's generator, which a call the kernels refuse (and hand to torch)
// must leave untouched. Raises TypeError for anything else (or a callable's result that is not
// an int), ValueError for an int outside [0, 2**64), and what the callable raises.
inline uint64_t seed_key(py::handle key) {
  py::object k = py::reinterpret_borrow<py::object>(key);
  if (!PyLong_Check(k.ptr())) {
    if (PyCallable_Check(k.ptr()) == 0)
      throw py::type_error("fastinit: key must be an int or a callable returning one");
    k = k();
    if (!PyLong_Check(k.ptr()))
      throw py::type_error("fastinit: the key callable returned " +
                           std::string(Py_TYPE(k.ptr())->tp_name) + ", not an int");
  }
  const unsigned long long v = PyLong_AsUnsignedLongLong(k.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred() != nullptr) {
    PyErr_Clear();
    throw py::value_error("fastinit: key must lie in [0, 2**64)");
  }
  return v;
}

// scatter_constant's indices as a C-contiguous int64 array (a copy only where a conversion is
// needed); TypeError when they cannot be converted.
inline py::array_t<int64_t, py::array::c_style | py::array::forcecast> int64_indices(
    py::handle indices) {
  auto arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(indices);
  if (!arr) throw py::type_error("fastinit: indices must be convertible to an int64 array");
  return arr;
}

// Raises BufferError unless the CPU can address the buffer's memory (DLPack CPU, CUDA-host
// or CUDA-managed memory); `who` names the caller in the message.
FASTINIT_CORE_API void require_host_memory(const BufferView& b, const char* who);

}  // namespace fastinit
