// Assembles the fastinit._core extension module from the per-area registration units.
#include "fastinit/prelude.hpp"

#include "fastinit/native_state.hpp"

namespace fastinit {
void register_fill(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastinit native kernels (private; use the fastinit package)";
  fastinit::register_fill(m);
  fastinit::register_native_state(m);
#ifdef FASTINIT_COMPILED_ISAS
  m.attr("_compiled_isa_list") = FASTINIT_COMPILED_ISAS;
#endif
}
