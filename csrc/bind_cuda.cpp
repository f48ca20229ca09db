// fastinit._cuda: the CUDA fills, with the same Python signatures as fastinit._core's fill,
// constant and scatter_constant plus a keyword-only `cuda_stream` (the stream to launch on,
// the one fastinit passed to the producer's __dlpack__(stream=...)). Buffers, shards and
// parameters are checked and set up by the same host code as the CPU path (buffer.cpp,
// fill.cpp), so both devices start from identical FillParams.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_fill.hpp"
#include "fastinit/buffer.hpp"
#include "fastinit/dlpack.hpp"
#include "fastinit/fill.hpp"
#include "fastinit/gil.hpp"
#include "fastinit/native_state.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

namespace {

[[noreturn]] void raise_buffer_error(const std::string& msg) {
  PyErr_SetString(PyExc_BufferError, msg.c_str());
  throw py::error_already_set();
}

void require_device(const BufferView& b, DLDeviceType device_type) {
  if (b.device_type != device_type)
    raise_buffer_error(std::string("fastinit: ") +
                       (device_type == kDLCUDA ? "the CUDA kernels write CUDA device memory only"
                                               : "the host emulation writes CPU memory only") +
                       ", got DLPack device type " + std::to_string(b.device_type) + " (device " +
                       std::to_string(b.device_id) + ")");
  if (reinterpret_cast<uintptr_t>(b.data) % static_cast<uintptr_t>(dtype_size(b.dtype)) != 0)
    throw py::value_error("fastinit: the buffer is not aligned to its itemsize");
}


int per_block(DType t) { return t == DType::F64 ? 2 : 4; }

uint64_t pattern_of(double value, DType t) {
  uint64_t bits = 0;
  encode_value(value, t, &bits);  // little-endian: the dtype's bytes are the low ones
  return bits;
}

// A fill's buffer, parameters and kernel layout, all checked before anything is launched.
struct FillJob {
  BufferView b;
  FillParams P;
  cuda::DeviceLayout L;
};

FillJob prepare_fill(py::handle target, DLDeviceType device_type, const std::string& dist,
                     const std::vector<double>& params, py::handle key, uint64_t stream,
                     py::handle global_shape, py::handle global_offset) {
  FillJob j{acquire_buffer(target), {}, {}};
  require_device(j.b, device_type);
  const Shard s = make_shard(j.b, global_shape, global_offset);
  j.P = make_params(dist, j.b.dtype, params, 0, stream);
  j.L = cuda::device_layout(make_layout(j.b, s), per_block(j.b.dtype));
  j.P.key = seed_key(key);  // last: every check has passed (see seed_key)
  return j;
}

cuda::DeviceLayout whole_layout(const BufferView& b) {
  const Shard whole{b.shape, std::vector<int64_t>(b.shape.size(), 0)};
  return cuda::device_layout(make_layout(b, whole), per_block(b.dtype));
}


}  // namespace

}  // namespace fastinit

// Every call that leaves the GIL does so through run_without_gil, as the CPU bindings do: a
// daemon thread still in a call when the interpreter exits is ended there by a forced unwind,
// which pybind11's gil_scoped_release (re-taking the GIL in a destructor) turns into
// std::terminate; run_without_gil refuses new calls once exit has begun and lets the unwind
// pass. For the same reason the arguments are handles, not owning objects, whose release on
// that unwind would run without the GIL (see HeldRef in gil.hpp).
PYBIND11_MODULE(_cuda, m) {
  using namespace fastinit;
  m.doc() = "fastinit CUDA kernels (private; loaded by fastinit._cuda_backend for CUDA buffers)";

  m.def(
      "fill",
      [](py::handle target, const std::string& dist, const std::vector<double>& params,
         py::handle key, uint64_t stream, py::handle global_shape, py::handle global_offset,
         uintptr_t cuda_stream) {
        FillJob j =
            prepare_fill(target, kDLCUDA, dist, params, key, stream, global_shape, global_offset);
        run_without_gil([&](const StopCheck&) {
          cuda::fill(j.L, j.P, j.b.data, j.b.device_id, cuda_stream);
        });
      },
      py::arg("target"), py::arg("dist"), py::arg("params"), py::arg("key"), py::arg("stream"),
      py::arg("global_shape") = py::none(), py::arg("global_offset") = py::none(), py::kw_only(),
      py::arg("cuda_stream") = 0,
      "Fill a CUDA DLPack capsule; launched on cuda_stream (0/1 legacy default, 2 per-thread "
      "default, else a cudaStream_t) without waiting for it.");

  m.def(
      "constant",
      [](py::handle target, double value, py::handle global_shape, py::handle global_offset,
         uintptr_t cuda_stream) {
        BufferView b = acquire_buffer(target);
        require_device(b, kDLCUDA);
        make_shard(b, global_shape, global_offset);  // validated for symmetry with the fills
        const cuda::DeviceLayout L = whole_layout(b);
        const uint64_t pattern = pattern_of(value, b.dtype);
        run_without_gil([&](const StopCheck&) {
          cuda::constant(L, dtype_size(b.dtype), pattern, b.data, b.device_id, cuda_stream);
        });
      },
      py::arg("target"), py::arg("value"), py::arg("global_shape") = py::none(),
      py::arg("global_offset") = py::none(), py::kw_only(), py::arg("cuda_stream") = 0);

  m.def(
      "scatter_constant",
      [](py::handle target, double value, py::handle indices, py::handle global_shape,
         py::handle global_offset, uintptr_t cuda_stream) {
        BufferView b = acquire_buffer(target);
        require_device(b, kDLCUDA);
        const Shard s = make_shard(b, global_shape, global_offset);
        const uint64_t pattern = pattern_of(value, b.dtype);
        std::vector<int64_t> offsets;
        {  // arguments are handles and the converted array is released here, with the GIL
          const auto arr = int64_indices(indices);
          offsets = scatter_offsets(b, s, arr.data(), arr.size());
        }
        run_without_gil([&](const StopCheck&) {
          cuda::scatter(offsets.data(), static_cast<int64_t>(offsets.size()), dtype_size(b.dtype),
                      pattern, b.data, b.device_id, cuda_stream);
        });
      },
      py::arg("target"), py::arg("value"), py::arg("indices"), py::arg("global_shape") = py::none(),
      py::arg("global_offset") = py::none(), py::kw_only(), py::arg("cuda_stream") = 0);

  register_native_state(m);

  m.def("device_count", &cuda::device_count,
        "Number of visible CUDA devices (0 if the driver sees none); RuntimeError naming the "
        "reason when there is no usable CUDA driver.");
  m.def("check_device", &cuda::check_device, py::arg("device"),
        "RuntimeError unless the device exists and this build has code for it.");
  m.def(
      "device_info",
      [](int device) {
        const cuda::DeviceInfo i = cuda::device_info(device);
        py::dict d;
        d["name"] = i.name;
        d["compute_capability"] = py::make_tuple(i.major, i.minor);
        d["multiprocessors"] = i.multiprocessors;
        d["total_memory"] = i.total_memory;
        d["has_code"] = i.has_code;
        return d;
      },
      py::arg("device"));
  m.def(
      "unavailable_reason",
      [] {
        std::string message;
        cuda::unavailable(&message);
        return message;
      },
      "Why CUDA cannot be used here (no driver, driver too old, no device), one cause; \"\" "
      "when a device is visible.");
  // Test hook: the message for each cause, whatever this machine has.
  m.def(
      "_unavailable_message",
      [](bool no_device_error, int driver, int runtime, const std::string& detail) {
        const cuda::Unavailable c = cuda::classify_unavailable(no_device_error, driver, runtime);
        return cuda::unavailable_message(c, driver, runtime, detail);
      },
      py::arg("no_device_error"), py::arg("driver"), py::arg("runtime"), py::arg("detail"));
  m.def("runtime_version", &cuda::runtime_version, "CUDA runtime version linked in (e.g. 13000).");
  m.def("driver_version", &cuda::driver_version, "CUDA version the driver supports; 0 if none.");
  m.def("architectures", &cuda::architectures, "The CUDA_ARCHITECTURES this module was built for.");

  // Test hooks: the CUDA kernels' work items run serially on the CPU, writing a NumPy array.
  m.def(
      "_emulate_fill",
      [](py::handle target, const std::string& dist, const std::vector<double>& params,
         py::handle key, uint64_t stream, py::handle global_shape, py::handle global_offset) {
        FillJob j =
            prepare_fill(target, kDLCPU, dist, params, key, stream, global_shape, global_offset);
        run_without_gil([&](const StopCheck&) {
          cuda::emulate_fill(j.L, j.P, j.b.data);
        });
      },
      py::arg("target"), py::arg("dist"), py::arg("params"), py::arg("key"), py::arg("stream"),
      py::arg("global_shape") = py::none(), py::arg("global_offset") = py::none());
  m.def(
      "_emulate_constant",
      [](py::handle target, double value) {
        BufferView b = acquire_buffer(target);
        require_device(b, kDLCPU);
        const cuda::DeviceLayout L = whole_layout(b);
        const uint64_t pattern = pattern_of(value, b.dtype);
        run_without_gil([&](const StopCheck&) {
          cuda::emulate_constant(L, dtype_size(b.dtype), pattern, b.data);
        });
      },
      py::arg("target"), py::arg("value"));
}
