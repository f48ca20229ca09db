// Drives one CPU kernel set over a cache-resident buffer, for instruction counting
// (tools/kernel_counts.sh runs it under valgrind --tool=callgrind): kernel_count ISA DIST DTYPE
// N REPS fills elements [0, N) REPS times with the named set (scalar, avx2, avx512, neon).
// `kernel_count ratio A B N ROUNDS` times sets A and B on every op (float32, bfloat16) instead,
// alternating A and B in one process, and prints the medians per element and B/A... A/B.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fastinit/fill.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/params.hpp"

using namespace fastinit;

FillParams bench_params(const std::string& dist, DType t);

// n doubles at a 64-byte boundary inside storage, as NumPy and torch allocate (a std::vector
// this large comes from mmap at 16 bytes past a page: every 64-byte store would then be split
// across two cache lines, which timed the kernels on a layout no caller has).
double* aligned_buffer(std::vector<double>& storage, long n) {
  storage.assign(static_cast<size_t>(n) + 8, 0.0);
  const uintptr_t p = reinterpret_cast<uintptr_t>(storage.data());
  return reinterpret_cast<double*>((p + 63) & ~uintptr_t{63});
}

int ratio_mode(const std::string& a, const std::string& b, long n, int rounds) {
  std::vector<double> storage;
  double* const data = aligned_buffer(storage, n);
  const char* dists[] = {"uniform", "normal", "trunc_normal"};
  const DType types[] = {DType::F32, DType::BF16};
  for (DType t : types)
    for (const char* d : dists) {
      const FillParams P = bench_params(d, t);
      std::vector<double> ta, tb;
      for (int r = 0; r < rounds; ++r)
        for (int w = 0; w < 2; ++w) {
          set_active_isa(w == 0 ? a : b);
          const KernelTable& kt = active_kernels();
          kt.fill_range(P, data, 0, n, false);  // warm
          const auto t0 = std::chrono::steady_clock::now();
          for (int k = 0; k < 4; ++k) kt.fill_range(P, data, 0, n, false);
          const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
          (w == 0 ? ta : tb).push_back(ns / (4.0 * n));
        }
      std::sort(ta.begin(), ta.end());
      std::sort(tb.begin(), tb.end());
      const double ma = ta[ta.size() / 2], mb = tb[tb.size() / 2];
      std::printf("%-9s %-13s %s %.3f ns  %s %.3f ns  %s/%s %.2f\n", t == DType::F32 ? "float32" : "bfloat16",
                  d, a.c_str(), ma, b.c_str(), mb, a.c_str(), b.c_str(), ma / mb);
    }
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "ratio")
    return ratio_mode(argv[2], argv[3], std::atol(argv[4]), std::atoi(argv[5]));
  if (argc != 6) {
    std::fprintf(stderr, "usage: kernel_count ISA uniform|normal|trunc_normal f32|f64|f16|bf16 N REPS\n");
    return 2;
  }
  const std::string isa = argv[1], dist = argv[2], dt = argv[3];
  const long n = std::atol(argv[4]), reps = std::atol(argv[5]);
  const FillParams P = bench_params(dist, dt == "f32" ? DType::F32 : dt == "f64" ? DType::F64 : dt == "f16" ? DType::F16 : DType::BF16);
  set_active_isa(isa);
  const KernelTable& kt = active_kernels();
  std::vector<double> storage;  // 8 bytes per element: room for any dtype
  double* const data = aligned_buffer(storage, n);
  for (long r = 0; r < reps; ++r) kt.fill_range(P, data, 0, n, false);
  std::printf("%s %s %s: %ld x %ld elements, first word %016llx\n", kt.name, dist.c_str(), dt.c_str(),
              reps, n, static_cast<unsigned long long>(*reinterpret_cast<uint64_t*>(data)));
  return 0;
}

FillParams bench_params(const std::string& dist, DType t) {
  // The bench's parameters: uniform(-1, 1), normal(0, 1), trunc_normal(0, 1, -2, 2), set up by
  // the host code the bindings use.
  const std::vector<double> args = dist == "uniform"  ? std::vector<double>{-1.0, 1.0}
                                   : dist == "normal" ? std::vector<double>{0.0, 1.0}
                                                      : std::vector<double>{0.0, 1.0, -2.0, 2.0};
  return make_params(dist, t, args, 1, 0);
}
