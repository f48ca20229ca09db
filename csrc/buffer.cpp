#include "fastinit/buffer.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <sstream>

#include "fastinit/dlpack.hpp"
#include "fastinit/gil.hpp"

namespace fastinit {

namespace {

[[noreturn]] void raise_buffer_error(const std::string& msg) {
  PyErr_SetString(PyExc_BufferError, msg.c_str());
  throw py::error_already_set();
}

std::string shape_str(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  if (v.size() == 1) s << ",";
  s << ")";
  return s.str();
}

// Rejects stride 0 (with extent > 1) and strides whose elements would alias: sorted by
// |stride|, each stride must exceed the span of all smaller dimensions. This is the exact
// test for the layouts that tensors libraries produce and a safe (conservative) one in general.
void check_no_overlap(const BufferView& b) {
  if (b.size() == 0) return;  // nothing is written, and zero-size views carry arbitrary strides
  const auto too_far = [] {
    return py::value_error("fastinit: the buffer's strides reach beyond 2^63 - 1 elements");
  };
  std::vector<std::pair<int64_t, int64_t>> dims;  // (|stride|, extent)
  for (int d = 0; d < b.ndim(); ++d)
    if (b.shape[d] > 1) {
      if (b.strides[d] == std::numeric_limits<int64_t>::min()) throw too_far();
      dims.emplace_back(std::llabs(b.strides[d]), b.shape[d]);
    }
  std::sort(dims.begin(), dims.end());
  int64_t span = 0;  // largest offset reachable with the smaller dimensions
  for (const auto& [stride, extent] : dims) {
    if (stride <= span)
      throw py::value_error(
          "fastinit: the buffer's strides make elements overlap (stride 0 or a self-overlapping "
          "view, e.g. from expand/broadcast_to); fill a tensor with distinct elements");
    int64_t reach;
    if (__builtin_mul_overflow(stride, extent - 1, &reach) ||
        __builtin_add_overflow(span, reach, &span))
      throw too_far();
  }
}

DType dtype_from_dlpack(const DLDataType& t) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return DType::F32;
    if (t.code == kDLFloat && t.bits == 64) return DType::F64;
    if (t.code == kDLFloat && t.bits == 16) return DType::F16;
    if (t.code == kDLBfloat && t.bits == 16) return DType::BF16;
  }
  const char* kind = "unknown";
  switch (t.code) {
    case kDLInt: kind = "int"; break;
    case kDLUInt: kind = "uint"; break;
    case kDLFloat: kind = "float"; break;
    case kDLBfloat: kind = "bfloat"; break;
    case kDLComplex: kind = "complex"; break;
    case kDLBool: kind = "bool"; break;
    default: break;
  }
  std::ostringstream s;
  s << "fastinit: unsupported dtype " << kind << static_cast<int>(t.bits);
  if (t.lanes != 1) s << "x" << t.lanes;
  s << "; expected float32, float64, float16 or bfloat16";
  throw py::type_error(s.str());
}

void fill_from_dltensor(BufferView& b, const DLTensor& t) {
  if (t.ndim < 0) raise_buffer_error("fastinit: DLPack tensor with negative ndim");
  b.device_type = t.device.device_type;
  b.device_id = t.device.device_id;
  b.dtype = dtype_from_dlpack(t.dtype);
  b.shape.assign(t.shape, t.shape + t.ndim);
  for (int64_t s : b.shape)
    if (s < 0) raise_buffer_error("fastinit: DLPack tensor with a negative extent");
  // NumPy guarantees this for its arrays; a DLPack producer might claim anything.
  int64_t n = 1;
  if (std::find(b.shape.begin(), b.shape.end(), 0) == b.shape.end())
    for (int64_t s : b.shape)
      if (__builtin_mul_overflow(n, s, &n))
        raise_buffer_error("fastinit: DLPack tensor with more than 2^63 - 1 elements");
  b.strides.resize(t.ndim);
  if (t.strides != nullptr) {
    b.strides.assign(t.strides, t.strides + t.ndim);
  } else {
    // Unsigned: the suffix products of an empty tensor may wrap (its strides are never used);
    // for a non-empty one they are at most its element count, checked above.
    uint64_t s = 1;
    for (int d = t.ndim - 1; d >= 0; --d) {
      b.strides[d] = static_cast<int64_t>(s);
      s *= static_cast<uint64_t>(b.shape[d]);
    }
  }
  if (t.data == nullptr && b.size() != 0)
    // Storage-less tensors (a DTensor's or FakeTensor's wrapper, a functional tensor) export
    // a NULL data pointer: there is nothing here to write.
    raise_buffer_error(
        "fastinit: the DLPack tensor has no data (NULL data pointer); a storage-less tensor "
        "(DTensor, FakeTensor, functional tensor) cannot be filled through DLPack");
  b.data = t.data == nullptr ? nullptr : static_cast<char*>(t.data) + t.byte_offset;
}

}  // namespace

BufferView acquire_buffer(py::handle obj) {
  BufferView b;
  if (py::isinstance<py::array>(obj)) {
    auto arr = py::reinterpret_borrow<py::array>(obj);
    const py::dtype dt = arr.dtype();
    const std::string name = py::str(dt.attr("name"));
    const char kind = dt.kind();
    const auto itemsize = static_cast<int64_t>(dt.itemsize());
    if (kind == 'f' && itemsize == 4) b.dtype = DType::F32;
    else if (kind == 'f' && itemsize == 8) b.dtype = DType::F64;
    else if (kind == 'f' && itemsize == 2) b.dtype = DType::F16;
    else if (name == "bfloat16" && itemsize == 2) b.dtype = DType::BF16;
    else
      throw py::type_error("fastinit: unsupported dtype " + name +
                           "; expected float32, float64, float16 or bfloat16");
    if (!dt.attr("isnative").cast<bool>())
      throw py::value_error("fastinit: the array must be in machine byte order, got dtype " +
                            std::string(py::str(dt)));
    if (!arr.writeable()) throw py::value_error("fastinit: the output array is read-only");
    const int flags = py::detail::array_proxy(arr.ptr())->flags;
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
      throw py::value_error("fastinit: the output array is not aligned to its itemsize");
    b.shape.resize(arr.ndim());
    b.strides.resize(arr.ndim());
    for (py::ssize_t d = 0; d < arr.ndim(); ++d) {
      b.shape[d] = arr.shape(d);
      const int64_t sb = arr.strides(d);
      if (sb % itemsize != 0)
        throw py::value_error("fastinit: array strides must be multiples of the itemsize");
      b.strides[d] = sb / itemsize;
    }
    b.data = static_cast<char*>(arr.mutable_data());
    b.owner = std::shared_ptr<void>(obj.ptr(), [](void* p) {
      // A daemon thread ended at interpreter exit unwinds through here without the GIL and
      // cannot take it (see gil.hpp): the reference is leaked with the dying interpreter.
      if (interpreter_finalizing() && !PyGILState_Check()) return;
      py::gil_scoped_acquire gil;
      Py_DECREF(static_cast<PyObject*>(p));
    });
    Py_INCREF(obj.ptr());
    check_no_overlap(b);
    return b;
  }
  if (PyCapsule_CheckExact(obj.ptr())) {
    PyObject* cap = obj.ptr();
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
      auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
      // From here on fastinit owns the tensor: rename the capsule so the producer's capsule
      // destructor does not free it too, and call the deleter exactly once when done.
      PyCapsule_SetName(cap, "used_dltensor_versioned");
      b.owner = std::shared_ptr<void>(m, [](void* p) {
        auto* mt = static_cast<DLManagedTensorVersioned*>(p);
        if (mt->deleter) mt->deleter(mt);
      });
      if (m->version.major != 1)
        raise_buffer_error("fastinit: unsupported DLPack major version " +
                           std::to_string(m->version.major) + " (expected 1)");
      if (m->flags & FASTINIT_DLPACK_FLAG_BITMASK_READ_ONLY)
        raise_buffer_error("fastinit: the DLPack producer marked this tensor read-only");
      fill_from_dltensor(b, m->dl_tensor);
    } else if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      PyCapsule_SetName(cap, "used_dltensor");
      b.owner = std::shared_ptr<void>(m, [](void* p) {
        auto* mt = static_cast<DLManagedTensor*>(p);
        if (mt->deleter) mt->deleter(mt);
      });
      fill_from_dltensor(b, m->dl_tensor);
    } else {
      raise_buffer_error("fastinit: expected an unused DLPack capsule ('dltensor' or "
                         "'dltensor_versioned'); a capsule can be consumed only once");
    }
    check_no_overlap(b);
    return b;
  }
  throw py::type_error("fastinit: expected a NumPy array or a DLPack capsule, got " +
                       std::string(py::str(py::type::of(obj).attr("__name__"))));
}

void require_host_memory(const BufferView& b, const char* who) {
  if (dl_device_host_addressable(b.device_type)) return;
  raise_buffer_error(std::string("fastinit: ") + who + " cannot write to DLPack device type " +
                     std::to_string(b.device_type) + " (device " + std::to_string(b.device_id) +
                     ")");
}

Shard make_shard(const BufferView& b, py::handle global_shape,
                 py::handle global_offset) {
  Shard s;
  const int nd = b.ndim();
  if (global_shape.is_none()) {
    if (!global_offset.is_none())
      throw py::value_error("fastinit: global_offset given without global_shape");
    s.global_shape = b.shape;
    s.global_offset.assign(nd, 0);
    return s;
  }
  s.global_shape = global_shape.cast<std::vector<int64_t>>();
  if (global_offset.is_none())
    s.global_offset.assign(s.global_shape.size(), 0);
  else
    s.global_offset = global_offset.cast<std::vector<int64_t>>();
  if (static_cast<int>(s.global_shape.size()) != nd ||
      static_cast<int>(s.global_offset.size()) != nd)
    throw py::value_error("fastinit: global_shape " + shape_str(s.global_shape) +
                          " and global_offset " + shape_str(s.global_offset) +
                          " must have one entry per dimension of the buffer, shape " +
                          shape_str(b.shape));
  for (int d = 0; d < nd; ++d) {
    if (s.global_shape[d] < 0 || s.global_offset[d] < 0 ||
        s.global_offset[d] > s.global_shape[d] - b.shape[d])
      throw py::value_error("fastinit: a shard of shape " + shape_str(b.shape) + " at offset " +
                            shape_str(s.global_offset) + " does not fit in global shape " +
                            shape_str(s.global_shape));
  }
  // Global element indices are int64_t (make_layout, the Philox counter).
  int64_t n = 1;
  if (std::find(s.global_shape.begin(), s.global_shape.end(), 0) == s.global_shape.end())
    for (int64_t v : s.global_shape)
      if (__builtin_mul_overflow(n, v, &n))
        throw py::value_error("fastinit: global_shape " + shape_str(s.global_shape) +
                              " has more than 2^63 - 1 elements");
  return s;
}

}  // namespace fastinit
