// Bit equality of every compiled SIMD kernel set with the scalar set, without Python: the
// CPU kernels (csrc/kernels_isa.cpp, built once per instruction set) are linked here with the
// runtime dispatch (csrc/dispatch.cpp). The host parameter setup (csrc/fill.cpp) needs Python
// headers, so params() below builds the same FillParams for bounds that every dtype represents
// exactly (the golden check fails if the two ever disagree). Built and
// run by tools/arm_harness.sh: cross-compiled for aarch64 and run under qemu-user (NEON vs
// scalar), and natively on x86-64 (AVX2 and AVX-512 vs scalar, where the CPU has them).
//
// For every distribution x dtype class x parameter set x (key, stream) x start offset x length,
// each kernel set fills the same range and the bytes must equal the scalar set's; the bytes
// around the range must stay untouched. The frozen values of tests/test_golden.py are checked
// on every set too. Exit status 0 only if every check passed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastinit/kernel_table.hpp"
#include "fastinit/params.hpp"

using namespace fastinit;

namespace {

const char* dtype_str(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::F16: return "float16";
    default: return "bfloat16";
  }
}

struct Case {
  const char* dist;
  std::vector<double> p;
};

// Every bound is exact in float16 and bfloat16, so no dtype rounds the clamp bounds.
// Central and tail parameter sets: the tails drive ndtri through its rare branches (Wichura's
// tail rationals, near and far), the narrow uniform ranges make the clamp act.
const Case kCases[] = {
    {"uniform", {-1.0, 2.0}},
    {"uniform", {0.0, 1.0}},
    {"uniform", {0.125, 0.375}},
    {"uniform", {-0x1p-10, 0x1p-10}},
    {"normal", {0.5, 2.0}},
    {"normal", {0.0, 0.02}},
    {"normal", {-3.0, 0.0}},
    {"trunc_normal", {0.0, 1.0, -1.5, 2.5}},
    {"trunc_normal", {0.0, 1.0, -2.0, 2.0}},
    {"trunc_normal", {0.0, 0.015625, -0.03125, 0.03125}},
    {"trunc_normal", {0.0, 1.0, 2.5, 6.0}},
    {"trunc_normal", {1.0, 2.0, -30.0, -9.0}},
    {"trunc_normal", {0.0, 1.0, 5.5, 40.0}},
    {"trunc_normal", {0.0, 1.0, -38.0, -36.0}},  // float64 only (too little mass for float32)
};

const DType kDtypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

struct Stream {
  uint64_t key, stream;
};
const Stream kStreams[] = {{1234, 0}, {0xDEADBEEFCAFEF00Dull, 7}, {42, (uint64_t{1} << 40) + 3}};

// Starts: unaligned to every group size, and ranges across the 2^32 carry of the block counter
// (element 2^34 for the 32-bit class, 2^33 for float64).
const int64_t kStarts[] = {0, 1, 2, 3, 5, 13, 63, 64, 65, 1000003, (int64_t{1} << 33) - 21,
                           (int64_t{1} << 34) - 37, (int64_t{1} << 60) + 11};
const int64_t kLengths[] = {1, 2, 3, 5, 31, 64, 67, 257, 1029};

constexpr int64_t kPad = 128;

// Phi(x), as the host computes it (erfc keeps the lower tail's relative accuracy).
double ndtr(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// The kernel parameters of csrc/fill.cpp (make_params) for bounds exact in every dtype.
// Throws std::invalid_argument where fill.cpp would (too little mass for the dtype class).
FillParams params(const std::string& dist, DType t, const std::vector<double>& p, uint64_t key,
                  uint64_t stream) {
  FillParams P{};
  P.dtype = t;
  P.key = key;
  P.stream = stream;
  if (dist == "uniform") {
    P.dist = Dist::Uniform;
    const double low = p[0], high = p[1];
    P.f[0] = static_cast<float>(low);
    P.f[1] = static_cast<float>(high - low);
    P.d[0] = low;
    P.d[1] = high - low;
    P.f[2] = static_cast<float>(low);
    P.f[3] = static_cast<float>(high);
    P.d[2] = low;
    P.d[3] = high;
    const float max_f = std::fma(1.0f - 0x1p-24f, P.f[1], P.f[0]);
    P.f[4] = (P.f[0] >= P.f[2] && max_f <= P.f[3]) ? 0.0f : 1.0f;
    const double max_d = std::fma(1.0 - 0x1p-53, P.d[1], P.d[0]);
    P.d[4] = (P.d[0] >= P.d[2] && max_d <= P.d[3]) ? 0.0 : 1.0;
  } else if (dist == "normal") {
    P.dist = Dist::Normal;
    P.f[0] = static_cast<float>(p[0]);
    P.f[1] = static_cast<float>(p[1]);
    P.d[0] = p[0];
    P.d[1] = p[1];
  } else {
    P.dist = Dist::TruncNormal;
    const double mean = p[0], sd = p[1], a = p[2], b = p[3];
    const double alpha = (a - mean) / sd, beta = (b - mean) / sd;
    const double pl = ndtr(alpha), qu = ndtr(-beta);
    double mass;
    if (beta <= 0) mass = ndtr(beta) - pl;
    else if (alpha >= 0) mass = ndtr(-alpha) - qu;
    else mass = 1.0 - pl - qu;
    if (!(mass >= (t != DType::F64 ? 0x1p-100 : 0x1p-1000)))
      throw std::invalid_argument("too little mass");
    P.f[0] = static_cast<float>(mean);
    P.f[1] = static_cast<float>(sd);
    P.f[4] = static_cast<float>(pl);
    P.f[5] = static_cast<float>(qu);
    P.f[6] = static_cast<float>(mass);
    P.d[0] = mean;
    P.d[1] = sd;
    P.d[4] = pl;
    P.d[5] = qu;
    P.d[6] = mass;
    P.f[2] = static_cast<float>(a);
    P.f[3] = static_cast<float>(b);
    P.d[2] = a;
    P.d[3] = b;
  }
  return P;
}

long g_checks = 0, g_failures = 0;

void fail(const std::string& what) {
  if (++g_failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

// Fills [i0, i0 + n) with kt into a canary-padded buffer, `shift` elements past a 64-byte
// boundary; returns the bytes of the range.
std::vector<unsigned char> run(const KernelTable& kt, const FillParams& P, int64_t i0, int64_t n,
                               int shift, bool nt) {
  const int64_t isz = dtype_size(P.dtype);
  std::vector<unsigned char> buf(static_cast<size_t>(2 * kPad + 64 + n * isz), 0xA5);
  unsigned char* base = buf.data();
  const uintptr_t a = reinterpret_cast<uintptr_t>(base + kPad);
  unsigned char* out = base + kPad + ((64 - a % 64) % 64) + shift * isz;
  kt.fill_range(P, out, i0, n, nt);
  // Canaries: every byte outside the range keeps its fill pattern.
  for (unsigned char* q = base; q < base + buf.size(); ++q)
    if ((q < out || q >= out + n * isz) && *q != 0xA5) {
      fail(std::string(kt.name) + ": wrote outside the range");
      break;
    }
  return std::vector<unsigned char>(out, out + n * isz);
}

void check_equal(const KernelTable& simd, const KernelTable& ref, const FillParams& P,
                 const std::string& label) {
  for (int64_t i0 : kStarts)
    for (int64_t n : kLengths)
      for (int variant = 0; variant < 3; ++variant) {
        const int shift = variant == 2 ? 1 : 0;
        const bool nt = variant >= 1;
        ++g_checks;
        if (run(simd, P, i0, n, shift, nt) != run(ref, P, i0, n, shift, false))
          fail(label + " start " + std::to_string(i0) + " length " + std::to_string(n) +
               (nt ? " nt" : "") + (shift ? " misaligned" : "") + ": " + simd.name +
               " differs from scalar");
      }
  // One long run: whole groups in place, many of them.
  const int64_t n = 100003;
  ++g_checks;
  if (run(simd, P, 7, n, 0, true) != run(ref, P, 7, n, 0, false))
    fail(label + " long run: " + std::string(simd.name) + " differs from scalar");
}

// tests/test_golden.py: seed 1234 (stream 0), elements 0..7.
struct Golden {
  const char* dist;
  DType t;
  uint64_t v[8];
};
const Golden kGolden[] = {
    {"uniform", DType::F32, {0xBF1E4DE7, 0x3FC7BB68, 0xBE4FED40, 0x3FB1AF6A, 0x3F5CCC9A, 0xBF29C5C7, 0x3FF73B28, 0xBF428369}},
    {"normal", DType::F32, {0xC02BB0E1, 0xC0017A91, 0x4019FAE0, 0xC008FD56, 0x3F2C06D6, 0x401C7EE4, 0x3F6DD574, 0x3F06EA59}},
    {"trunc_normal", DType::F32, {0xBF65C261, 0x3F891CD4, 0xBEF971EF, 0x3F5BD164, 0x3EBAB18D, 0xBF735F78, 0x3FF5DD0A, 0xBF89B1C9}},
    {"uniform", DType::F64, {0xBFE3C9BCC4AE1126, 0xBFC9FDA7584E50A0, 0x3FEB999353EAC746, 0x3FFEE7651B93D7C8, 0xBFD028A95D42FAC6, 0x3FF644521769B57A, 0x3FF2273CEBA6B25A, 0x3FD61A1C8DEE5D24}},
    {"normal", DType::F64, {0x3FF575C18EB819A8, 0xC00BC97C0111235B, 0x3FFE7C8849CFB2B9, 0x3FFDB1A937CFD71D, 0xC0019D0CD87ABE3F, 0x4003A19C7D9D85FB, 0x3FF11B91C86E22C0, 0xBFF0C7CCA87FA658}},
    {"trunc_normal", DType::F64, {0xBFECB84C191FAA24, 0xBFDF2E3E08E9B508, 0x3FD75630D3F28C32, 0x3FFEBBA0F510F9DA, 0xBFE0FC23465141E1, 0x3FEB9A7716CF023B, 0x3FE342C7D7C3A2C6, 0xBFA673E1A6C149AB}},
    {"uniform", DType::F16, {0xB8F2, 0x3E3E, 0xB27F, 0x3D8D, 0x3AE6, 0xB94E, 0x3FBA, 0xBA14}},
    {"normal", DType::F16, {0xC15E, 0xC00C, 0x40D0, 0xC048, 0x3960, 0x40E4, 0x3B6F, 0x3837}},
    {"trunc_normal", DType::F16, {0xBB2E, 0x3C49, 0xB7CC, 0x3ADF, 0x35D6, 0xBB9B, 0x3FAF, 0xBC4E}},
    {"uniform", DType::BF16, {0xBF1E, 0x3FC8, 0xBE50, 0x3FB2, 0x3F5D, 0xBF2A, 0x3FF7, 0xBF43}},
    {"normal", DType::BF16, {0xC02C, 0xC001, 0x401A, 0xC009, 0x3F2C, 0x401C, 0x3F6E, 0x3F07}},
    {"trunc_normal", DType::BF16, {0xBF66, 0x3F89, 0xBEF9, 0x3F5C, 0x3EBB, 0xBF73, 0x3FF6, 0xBF8A}},
};

std::vector<double> golden_args(const std::string& dist) {
  if (dist == "uniform") return {-1.0, 2.0};
  if (dist == "normal") return {0.5, 2.0};
  return {0.0, 1.0, -1.5, 2.5};
}

void check_golden(const KernelTable& kt) {
  for (const Golden& g : kGolden) {
    const FillParams P = params(g.dist, g.t, golden_args(g.dist), 1234, 0);
    const int isz = dtype_size(g.t);
    unsigned char out[64];
    kt.fill_range(P, out, 0, 8, false);
    ++g_checks;
    for (int i = 0; i < 8; ++i) {
      uint64_t v = 0;
      std::memcpy(&v, out + i * isz, static_cast<size_t>(isz));  // little-endian hosts
      if (v != g.v[i]) {
        fail(std::string(kt.name) + " golden " + g.dist + " " + dtype_str(g.t) + " element " +
             std::to_string(i));
        break;
      }
    }
  }
}

}  // namespace

int main() {
  const KernelTable scalar = scalar_kernels();
  std::vector<std::string> isas = supported_isas();
  std::string names;
  for (const auto& i : isas) names += (names.empty() ? "" : ", ") + i;
  std::printf("kernel sets compiled: %d, supported here: %s (best: %s)\n",
              static_cast<int>(compiled_isas().size()), names.c_str(), best_isa().c_str());
#if defined(__aarch64__)
  // On Arm the NEON set must be compiled in and chosen by default.
  if (best_isa() != "neon") fail("aarch64 build does not choose the neon kernel set");
#endif
  if (isas.size() < 2) fail("no SIMD kernel set to compare with scalar");
  check_golden(scalar);
  for (const auto& isa : isas) {
    if (isa == "scalar") continue;
    set_active_isa(isa);
    const KernelTable simd = active_kernels();
    if (isa != simd.name) fail("set_active_isa(" + isa + ") gave " + simd.name);
    check_golden(simd);
    long cases = 0;
    for (const Case& c : kCases)
      for (DType t : kDtypes)
        for (const Stream& s : kStreams) {
          FillParams P;
          try {
            P = params(c.dist, t, c.p, s.key, s.stream);
          } catch (const std::invalid_argument&) {
            continue;  // interval with too little mass for this dtype class
          }
          std::string label = std::string(c.dist) + "(";
          for (size_t k = 0; k < c.p.size(); ++k) label += (k ? ", " : "") + std::to_string(c.p[k]);
          label += ") " + std::string(dtype_str(t)) + " key " + std::to_string(s.key) + " stream " +
                   std::to_string(s.stream);
          check_equal(simd, scalar, P, label);
          ++cases;
        }
    std::printf("%s: %ld parameter sets x %d starts x %d lengths x 3 layouts vs scalar\n",
                simd.name, cases, static_cast<int>(sizeof kStarts / sizeof kStarts[0]),
                static_cast<int>(sizeof kLengths / sizeof kLengths[0]));
  }
  std::printf("%ld checks, %ld failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
