// Part of libfastinit_core: what every module reports as the process's native state.
#include "fastinit/native_state.hpp"

#include <dlfcn.h>

#include <string>

#include "fastinit/fill.hpp"
#include "fastinit/kernel_table.hpp"

namespace fastinit {

namespace {

// The file this function was loaded from: libfastinit_core's path, the same for every module
// when there is one core (a module with its own copy would report itself).
std::string core_library_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&core_library_path), &info) == 0 || info.dli_fname == nullptr)
    return "";
  return info.dli_fname;
}

}  // namespace

void register_native_state(py::module_& m) {
  m.def(
      "_native_state",
      [] {
        py::dict d;
        d["isa"] = std::string(active_kernels().name);
        d["threads"] = get_num_threads();
        d["library"] = core_library_path();
        return d;
      },
      "The native state this module sees (test hook): the active kernel set, the thread count "
      "and the path of the core library that holds them.");
}

}  // namespace fastinit
