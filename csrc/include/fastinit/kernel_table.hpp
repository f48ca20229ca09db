// The per-ISA kernel entry points and the runtime choice among them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastinit/params.hpp"

namespace fastinit {

// Fills logical elements [i0, i0 + n) of the stream described by P into contiguous memory.
using FillRangeFn = void (*)(const FillParams& P, void* out, int64_t i0, int64_t n, bool nt);

struct KernelTable {
  const char* name;
  int lanes;  // Philox blocks per SIMD step
  FillRangeFn fill_range;
};

KernelTable kernel_table_scalar();
#if defined(FASTINIT_HAVE_AVX2)
KernelTable kernel_table_avx2();
#endif
#if defined(FASTINIT_HAVE_AVX512)
KernelTable kernel_table_avx512();
#endif
#if defined(FASTINIT_HAVE_NEON)
KernelTable kernel_table_neon();
#endif

// The kernels in use (chosen once at import from CPUID, or from FASTINIT_CPU).
const KernelTable& active_kernels();
// The portable kernels, used for single scattered elements.
const KernelTable& scalar_kernels();
// Forces a kernel set by name; throws std::invalid_argument if it is not compiled in or not
// supported by this CPU.
void set_active_isa(const std::string& name);
std::vector<std::string> compiled_isas();
std::vector<std::string> supported_isas();
std::string best_isa();

}  // namespace fastinit
