// Python bindings for the fills: argument conversion only; checks and loops live in
// buffer.cpp and fill.cpp.
#include "fastinit/prelude.hpp"

#include <array>
#include <stdexcept>

#include "fastinit/buffer.hpp"
#include "fastinit/dlpack.hpp"
#include "fastinit/fill.hpp"
#include "fastinit/gil.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/lanes_scalar.hpp"
#include "fastinit/philox.hpp"

namespace fastinit {

void register_fill(py::module_& m) {
  m.def(
      "philox4x32",
      [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
        uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
        philox4x32_10<ScalarLanes>(c0, c1, c2, c3, key[0], key[1]);
        return py::make_tuple(c0, c1, c2, c3);
      },
      py::arg("counter"), py::arg("key"));

  m.def(
      "fill",
      [](py::handle target, const std::string& dist, const std::vector<double>& params,
         py::handle key, uint64_t stream, py::handle global_shape, py::handle global_offset) {
        BufferView b = acquire_buffer(target);
        require_host_memory(b, "the CPU kernels");
        const Shard s = make_shard(b, global_shape, global_offset);
        FillParams P = make_params(dist, b.dtype, params, 0, stream);
        P.key = seed_key(key);  // last: every check has passed (see seed_key)
        run_without_gil([&](const StopCheck& stop) { fill_cpu(b, s, P, stop); });
      },
      py::arg("target"), py::arg("dist"), py::arg("params"), py::arg("key"), py::arg("stream"),
      py::arg("global_shape") = py::none(), py::arg("global_offset") = py::none());

  m.def(
      "constant",
      [](py::handle target, double value, py::handle global_shape, py::handle global_offset) {
        BufferView b = acquire_buffer(target);
        require_host_memory(b, "the CPU kernels");
        make_shard(b, global_shape, global_offset);  // validated for symmetry with the fills
        run_without_gil([&](const StopCheck& stop) { constant_cpu(b, value, stop); });
      },
      py::arg("target"), py::arg("value"), py::arg("global_shape") = py::none(),
      py::arg("global_offset") = py::none());

  m.def(
      "scatter_constant",
      [](py::handle target, double value, py::handle indices, py::handle global_shape,
         py::handle global_offset) {
        BufferView b = acquire_buffer(target);
        require_host_memory(b, "the CPU kernels");
        const Shard s = make_shard(b, global_shape, global_offset);
        auto arr = int64_indices(indices);
        const int64_t* idx = arr.data();
        const int64_t n = arr.size();
        const HeldRef keep(std::move(arr));  // arguments here are handles (see HeldRef)
        run_without_gil([&](const StopCheck&) { scatter_constant_cpu(b, s, value, idx, n); });
      },
      py::arg("target"), py::arg("value"), py::arg("indices"),
      py::arg("global_shape") = py::none(), py::arg("global_offset") = py::none());

  m.def(
      "stop_kernels_at_exit",
      [] {
        py::gil_scoped_release nogil;  // running kernels may need the GIL to finish
        stop_kernels_at_exit();
      },
      "Called once at interpreter exit (atexit): no kernel starts after it, running ones stop "
      "at their next slice, and it waits for them.");

  m.def(
      "random_words",
      [](int64_t n, uint64_t key, uint64_t stream, uint64_t offset) {
        if (n < 0) throw std::invalid_argument("fastinit: n must be >= 0");
        py::array_t<uint32_t> arr(n);
        uint32_t* o = arr.mutable_data();
        HeldRef out(std::move(arr));
        run_without_gil([&](const StopCheck&) {
          for (int64_t i = 0; i < n; ++i) {
            const uint64_t w = offset + static_cast<uint64_t>(i);
            const uint64_t block = w >> 2;
            uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32),
                     c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
            philox4x32_10<ScalarLanes>(c0, c1, c2, c3, static_cast<uint32_t>(key),
                                       static_cast<uint32_t>(key >> 32));
            const uint32_t words[4] = {c0, c1, c2, c3};
            o[i] = words[w & 3];
          }
        });
        return out.take();
      },
      py::arg("n"), py::arg("key"), py::arg("stream"), py::arg("offset") = 0);

  m.def("round_to_dtype", [](double x, const std::string& dtype) {
    for (DType t : {DType::F32, DType::F64, DType::F16, DType::BF16})
      if (dtype_name(t) == dtype) return round_to_dtype(x, t);
    throw std::invalid_argument("fastinit: unknown dtype " + dtype);
  });

  // The DLPack device types, from dlpack.hpp, for the Python layer's routing. (The device
  // type enum ends well below 64.)
  py::list host_devices;
  for (int32_t t = 0; t < 64; ++t)
    if (dl_device_host_addressable(t)) host_devices.append(t);
  m.attr("DLPACK_HOST_DEVICES") = py::tuple(host_devices);
  m.attr("DLPACK_CUDA") = static_cast<int>(kDLCUDA);

  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("get_isa", [] { return std::string(active_kernels().name); });
  m.def("set_isa", &set_active_isa, py::arg("name"));
  m.def("compiled_isas", &compiled_isas);
  m.def("supported_isas", &supported_isas);
}

}  // namespace fastinit
