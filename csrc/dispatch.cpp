#include <cstdlib>
#include <stdexcept>

#include "fastinit/kernel_table.hpp"

namespace fastinit {

namespace {

bool cpu_supports(const std::string& isa) {
  if (isa == "scalar") return true;
#if defined(__x86_64__) || defined(_M_X64)
  // __builtin_cpu_supports consults CPUID and, for AVX state, the OS (XGETBV) through libgcc.
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
  // AdvSIMD (NEON) is part of the aarch64 base architecture: every aarch64 CPU runs it.
  if (isa == "neon") return true;
#endif
  return false;
}

KernelTable table_for(const std::string& isa) {
#if defined(FASTINIT_HAVE_AVX512)
  if (isa == "avx512") return kernel_table_avx512();
#endif
#if defined(FASTINIT_HAVE_AVX2)
  if (isa == "avx2") return kernel_table_avx2();
#endif
#if defined(FASTINIT_HAVE_NEON)
  if (isa == "neon") return kernel_table_neon();
#endif
  if (isa == "scalar") return kernel_table_scalar();
  throw std::invalid_argument("fastinit: kernel set '" + isa + "' is not compiled in");
}

KernelTable initial_table() {
  const char* env = std::getenv("FASTINIT_CPU");
  if (env != nullptr && *env != '\0') {
    const std::string want(env);
    const auto compiled = compiled_isas();
    bool known = false;
    for (const auto& c : compiled) known = known || c == want;
    if (!known || !cpu_supports(want))
      throw std::invalid_argument("fastinit: FASTINIT_CPU=" + want +
                                  " is not available here (compiled and supported: " +
                                  [] {
                                    std::string s;
                                    for (const auto& i : supported_isas()) s += (s.empty() ? "" : ", ") + i;
                                    return s;
                                  }() +
                                  ")");
    return table_for(want);
  }
  return table_for(best_isa());
}

KernelTable& active_slot() {
  static KernelTable t = initial_table();
  return t;
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> v{"scalar"};
#if defined(FASTINIT_HAVE_AVX2)
  v.emplace_back("avx2");
#endif
#if defined(FASTINIT_HAVE_AVX512)
  v.emplace_back("avx512");
#endif
#if defined(FASTINIT_HAVE_NEON)
  v.emplace_back("neon");
#endif
  return v;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> v;
  for (const auto& i : compiled_isas())
    if (cpu_supports(i)) v.push_back(i);
  return v;
}

std::string best_isa() { return supported_isas().back(); }

const KernelTable& active_kernels() { return active_slot(); }

const KernelTable& scalar_kernels() {
  static const KernelTable t = kernel_table_scalar();
  return t;
}

void set_active_isa(const std::string& name) {
  bool ok = false;
  for (const auto& i : supported_isas()) ok = ok || i == name;
  if (!ok) {
    std::string s;
    for (const auto& i : supported_isas()) s += (s.empty() ? "" : ", ") + i;
    throw std::invalid_argument("fastinit: kernel set '" + name +
                                "' is not available here (available: " + s + ")");
  }
  active_slot() = table_for(name);
}

}  // namespace fastinit
