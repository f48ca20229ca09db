// The process-wide native state (thread count, active kernel set) lives in one shared library,
// libfastinit_core, that every extension module links. Each module exposes this observer, so
// tests can check that all of them see one state.
#pragma once

#include "fastinit/config.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

// Defines m._native_state() -> {"isa": str, "threads": int, "library": path of the core library}.
FASTINIT_CORE_API void register_native_state(py::module_& m);

}  // namespace fastinit
