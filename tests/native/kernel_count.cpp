// Drives one CPU kernel set over a cache-resident buffer, for instruction counting
// (tools/kernel_counts.sh runs it under valgrind --tool=callgrind): kernel_count ISA DIST DTYPE
// N REPS fills elements [0, N) REPS times with the named set (scalar, avx2, avx512, neon).
// `kernel_count ratio A B N ROUNDS` times sets A and B on every op (float32, bfloat16) instead,
// alternating A and B in one process, and prints the medians per element and B/A... A/B.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fastinit/kernel_table.hpp"
#include "fastinit/params.hpp"

using namespace fastinit;

FillParams bench_params(const std::string& dist, DType t);

int ratio_mode(const std::string& a, const std::string& b, long n, int rounds) {
  std::vector<double> buf(static_cast<size_t>(n));
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
          kt.fill_range(P, buf.data(), 0, n, false);  // warm
          const auto t0 = std::chrono::steady_clock::now();
          for (int k = 0; k < 4; ++k) kt.fill_range(P, buf.data(), 0, n, false);
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
  std::vector<double> buf(static_cast<size_t>(n));  // 8 bytes per element: room for any dtype
  for (long r = 0; r < reps; ++r) kt.fill_range(P, buf.data(), 0, n, false);
  std::printf("%s %s %s: %ld x %ld elements, first word %016llx\n", kt.name, dist.c_str(), dt.c_str(),
              reps, n, static_cast<unsigned long long>(*reinterpret_cast<uint64_t*>(buf.data())));
  return 0;
}

FillParams bench_params(const std::string& dist, DType t) {
  FillParams P{};
  P.key = 1;
  P.dtype = t;
  // The bench's parameters: uniform(-1, 1), normal(0, 1), trunc_normal(0, 1, -2, 2) (the
  // truncation constants Phi(-2), Phi(-2) and the mass between, as the host computes them).
  if (dist == "uniform") {
    P.dist = Dist::Uniform;
    P.f[0] = -1.0f, P.f[1] = 2.0f, P.f[2] = -1.0f, P.f[3] = 1.0f;
    P.d[0] = -1.0, P.d[1] = 2.0, P.d[2] = -1.0, P.d[3] = 1.0;
  } else if (dist == "normal") {
    P.dist = Dist::Normal;
    P.f[1] = 1.0f, P.d[1] = 1.0;
  } else {
    P.dist = Dist::TruncNormal;
    const double pl = 0.022750131948179195, mass = 1.0 - 2 * pl;
    P.f[1] = 1.0f, P.f[2] = -2.0f, P.f[3] = 2.0f;
    P.f[4] = static_cast<float>(pl), P.f[5] = static_cast<float>(pl), P.f[6] = static_cast<float>(mass);
    P.d[1] = 1.0, P.d[2] = -2.0, P.d[3] = 2.0, P.d[4] = pl, P.d[5] = pl, P.d[6] = mass;
  }
  return P;
}
