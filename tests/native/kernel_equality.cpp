// Bit equality of every compiled SIMD kernel set with the scalar set, without Python: the
// CPU kernels (csrc/kernels_isa.cpp, built once per instruction set) are linked here with the
// runtime dispatch (csrc/dispatch.cpp) and the host parameter setup (csrc/fill.cpp, make_params:
// the same FillParams as the Python bindings build). Built and
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

#include "fastinit/fill.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/params.hpp"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

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

// Every bound is exact in float16 and bfloat16, so no dtype rounds the clamp bounds (the
// tiny uniform spans aside, which those dtypes round to zero or reject).
// Central and tail parameter sets: the tails drive ndtri through its rare branches (Wichura's
// tail rationals, near and far), the narrow uniform ranges make the clamp act.
const Case kCases[] = {
    {"uniform", {-1.0, 2.0}},
    {"uniform", {0.0, 1.0}},
    {"uniform", {0.125, 0.375}},
    {"uniform", {-0x1p-10, 0x1p-10}},
    // Spans whose step (span * 2^-24, * 2^-53 for float64) is inexact or subnormal: the kernels
    // form u = i * 2^-b first there (UniformDist::Params::exact_step). A dtype with no value in
    // the range skips the case.
    {"uniform", {0.0, 0x1.00001p-110}},
    {"uniform", {0.0, 0x1.0000000000004p-980}},
    {"uniform", {0x1p-100, 0x1p-100 + 0x1p-110}},
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
// The last: every key bit set, and a stream whose low word has its top bit set (round 0's
// stream constants, KeySchedule) and whose high word is all ones.
const Stream kStreams[] = {{1234, 0},
                           {0xDEADBEEFCAFEF00Dull, 7},
                           {42, (uint64_t{1} << 40) + 3},
                           {~uint64_t{0}, 0xFFFFFFFF80000001ull}};

// Starts: unaligned to every group size, and ranges across the 2^32 carry of the block counter
// (element 2^34 for the 32-bit class, 2^33 for float64): from just before it, and from far
// enough before it that the AVX2 pipeline (PhiloxAhead) runs its shared-high-word refills,
// then the one across the carry, then shared-high-word ones again.
const int64_t kStarts[] = {0, 1, 2, 3, 5, 13, 63, 64, 65, 1000003, (int64_t{1} << 33) - 21,
                           (int64_t{1} << 34) - 37, (int64_t{1} << 34) - 611,
                           (int64_t{1} << 60) + 11};
const int64_t kLengths[] = {1, 2, 3, 5, 31, 64, 67, 257, 1029};

constexpr int64_t kPad = 128;

// The kernel parameters exactly as the bindings build them; std::invalid_argument where the
// parameters cannot be honoured (too little mass for the dtype class).
FillParams params(const std::string& dist, DType t, const std::vector<double>& p, uint64_t key,
                  uint64_t stream) {
  return make_params(dist, t, p, key, stream);
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

// uniform_ with a span whose step (span * 2^-b) is exact but subnormal: flush-to-zero modes read
// a subnormal operand as zero, so the kernels must not use the step there (they form u first,
// from normal operands only). x86: the SSE/AVX control word's DAZ and FTZ bits, set only around
// the kernel call (the parameters are computed without them, as when an OpenMP worker thread
// runs in another mode than the caller). Not checked on Arm (FPCR.FZ).
void check_flush_to_zero(const KernelTable& kt) {
#if defined(__x86_64__)
  struct Tiny {
    DType t;
    double low, span;
  };
  const Tiny cases[] = {{DType::F32, 0x1p-100, 0x1p-110}, {DType::F64, 0x1p-1000, 0x1p-1010}};
  for (const Tiny& c : cases) {
    const FillParams P = params("uniform", c.t, {c.low, c.low + c.span}, 5, 0);
    const int64_t n = 1029;
    std::vector<unsigned char> ref(static_cast<size_t>(n * dtype_size(c.t)));
    std::vector<unsigned char> got(ref.size());
    kt.fill_range(P, ref.data(), 0, n, false);
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
    kt.fill_range(P, got.data(), 0, n, false);
    _mm_setcsr(csr);
    ++g_checks;
    if (ref != got)
      fail(std::string(kt.name) + ": uniform " + dtype_str(c.t) +
           " with a subnormal step depends on flush-to-zero");
  }
#else
  (void)kt;
#endif
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
  check_flush_to_zero(scalar);
  for (const auto& isa : isas) {
    if (isa == "scalar") continue;
    set_active_isa(isa);
    const KernelTable simd = active_kernels();
    if (isa != simd.name) fail("set_active_isa(" + isa + ") gave " + simd.name);
    check_golden(simd);
    check_flush_to_zero(simd);
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
