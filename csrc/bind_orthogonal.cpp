// fastinit._blas: the BLAS-backed orthogonal initialization, a module of its own so that
// `import fastinit` does not load OpenBLAS (and start its threads) until it is needed.
// Argument conversion only; the checks of the public API live in fastinit/_orthogonal.py,
// the loops in orthogonal.cpp.
#include "fastinit/prelude.hpp"

#include <optional>
#include <string>

#include "fastinit/buffer.hpp"
#include "fastinit/fill.hpp"
#include "fastinit/gil.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/native_state.hpp"
#include "fastinit/orthogonal.hpp"

namespace fastinit {

namespace {

// The options but the seed and the stop check, which the prepared job's run() takes.
OrthogonalOptions options(double gain, int threads, bool sign_correction, int64_t block) {
  // threads sizes the slices and the OpenMP regions: 0 would loop forever.
  if (threads < 1) throw std::invalid_argument("fastinit: threads must be >= 1");
  OrthogonalOptions o;
  o.gain = gain;
  o.threads = threads;
  o.sign_correction = sign_correction;
  o.block = block;
  return o;
}

std::string blas_version() {
  // "OpenBLAS 0.3.27.44.3 DYNAMIC_ARCH ..." -> "0.3.27.44.3"
  const std::string c = blas_config();
  const auto a = c.find(' ');
  if (a == std::string::npos) return c;
  const auto e = c.find(' ', a + 1);
  return c.substr(a + 1, e == std::string::npos ? std::string::npos : e - a - 1);
}

}  // namespace

void register_orthogonal(py::module_& m) {
  m.def(
      "orthogonal",
      [](py::handle target, double gain, py::handle key, uint64_t stream,
         std::optional<int> column_axis, int threads, bool sign_correction, int64_t block,
         int64_t slice_cols) {
        BufferView b = acquire_buffer(target);
        require_host_memory(b, "orthogonal initialization (CPU only)");
        OrthogonalOptions o = options(gain, threads, sign_correction, block);
        o.slice_cols = slice_cols;
        const auto job = prepare_orthogonal(b, column_axis, o);
        const uint64_t k = seed_key(key);  // last: every check has passed (see seed_key)
        run_without_gil([&](const StopCheck& stop) { job->run(k, stream, stop); });
      },
      py::arg("target"), py::arg("gain"), py::arg("key"), py::arg("stream"),
      py::arg("column_axis") = py::none(), py::arg("threads") = 1,
      py::arg("sign_correction") = true, py::arg("block") = 0, py::arg("slice_cols") = 0,
      "gain * a Haar (semi-)orthogonal matrix, in place (see fastinit.orthogonal_).");

  m.def(
      "delta_orthogonal",
      [](py::handle target, double gain, py::handle key, uint64_t stream,
         std::optional<int> column_axis, int threads) {
        BufferView b = acquire_buffer(target);
        require_host_memory(b, "orthogonal initialization (CPU only)");
        const auto job = prepare_delta_orthogonal(b, column_axis, options(gain, threads, true, 0));
        const uint64_t k = seed_key(key);  // last: every check has passed (see seed_key)
        run_without_gil([&](const StopCheck& stop) { job->run(k, stream, stop); });
      },
      py::arg("target"), py::arg("gain"), py::arg("key"), py::arg("stream"),
      py::arg("column_axis") = py::none(), py::arg("threads") = 1,
      "JAX's delta_orthogonal, in place (see fastinit.delta_orthogonal_).");

  m.def(
      "reflector",
      [](int64_t j, int64_t M, int64_t N, uint64_t key, uint64_t stream,
         bool float64) -> py::tuple {
        // Reflector j of an M x N Q: (v, tau, d) exactly as phase 1 computes them, generated
        // on its own from Z[j:, j] (for tests, and for other devices to check against).
        if (!(M >= N && N >= 1 && j >= 0 && j < N))
          throw std::invalid_argument("fastinit: reflector needs M >= N >= 1 and 0 <= j < N");
        const int64_t n = M - j;
        const DType t = float64 ? DType::F64 : DType::F32;
        const FillParams P = make_params(Dist::Normal, t, {0.0, 1.0}, key, stream);
        const KernelTable& kt = scalar_kernels();
        double tau = 0, d = 0;
        auto make = [&](auto* v) {
          for (int64_t t = 0; t < n; ++t) kt.fill_range(P, v + t, (j + t) * N + j, 1, false);
          householder_from_normals(v, n, j, &tau, &d);
        };
        if (float64) {
          py::array_t<double> v(n);
          make(v.mutable_data());
          return py::make_tuple(v, tau, d);
        }
        py::array_t<float> v(n);
        make(v.mutable_data());
        return py::make_tuple(v, tau, d);
      },
      py::arg("j"), py::arg("M"), py::arg("N"), py::arg("key"), py::arg("stream"),
      py::arg("float64") = false);

  m.def(
      "info",
      [] {
        py::dict d;
        d["name"] = "scipy-openblas32";
        d["version"] = blas_version();
        d["config"] = blas_config();
        d["corename"] = blas_corename();
        d["threads"] = blas_num_threads();
        const int p = blas_parallel_mode();
        d["threading"] = p == 0 ? "sequential" : (p == 1 ? "pthreads" : "openmp");
        d["block"] = "128 reflectors, 256 when min(rows, cols) >= 2048";
        return d;
      },
      "The BLAS used by orthogonal initialization.");

  // Without the GIL: it waits for fastinit's BLAS lock, which a running orthogonal_ holds
  // while its interrupt check takes the GIL for a moment (lock order: GIL never before it).
  m.def(
      "set_num_threads",
      [](int n) { run_without_gil([&](const StopCheck&) { blas_set_num_threads(n); }); },
      py::arg("n"),
      "Set OpenBLAS's thread count (fastinit sets it on every call to its own count).");
  m.def("get_num_threads", &blas_num_threads);
}

}  // namespace fastinit

PYBIND11_MODULE(_blas, m) {
  m.doc() = "fastinit orthogonal initialization on scipy-openblas32 (private; use fastinit)";
  fastinit::register_orthogonal(m);
  fastinit::register_native_state(m);
}
