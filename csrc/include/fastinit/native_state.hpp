// The process-wide native state (thread count, active kernel set) lives in one shared library,
// libfastinit_core, that every extension module links. Each module exposes this observer, so
// tests can check that all of them see one state. Header-only: it is compiled into each
// module's binding unit, and asks the dynamic linker where the state it reads is defined.
#pragma once

#include <dlfcn.h>

#include <string>

#include "fastinit/fill.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

// Defines m._native_state() -> {"isa": str, "threads": int, "library": the file that holds the
// thread count this module uses (libfastinit_core; a module with its own copy names itself)}.
inline void register_native_state(py::module_& m) {
  m.def(
      "_native_state",
      [] {
        py::dict d;
        d["isa"] = std::string(active_kernels().name);
        d["threads"] = get_num_threads();
        Dl_info info{};
        const bool found = dladdr(reinterpret_cast<void*>(&get_num_threads), &info) != 0 &&
                           info.dli_fname != nullptr;
        d["library"] = found ? std::string(info.dli_fname) : std::string();
        return d;
      },
      "The native state this module sees (test hook): the active kernel set, the thread count "
      "and the path of the library that holds them.");
}

}  // namespace fastinit
