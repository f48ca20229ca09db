#include "fastinit/fill.hpp"

#include <omp.h>
#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "fastinit/kernel_table.hpp"
#include "fastinit/lanes_scalar.hpp"
#include "fastinit/transforms.hpp"

namespace fastinit {

namespace {

std::atomic<int> g_threads{0};

// Fork: GNU OpenMP's thread pool does not survive fork(). A child forked after the parent ran
// a parallel region inherits the pool's bookkeeping but none of its threads, and its first
// parallel region with more than one thread waits for them forever. Such a child therefore
// runs every fastinit kernel on its own thread (same values: they never depend on the thread
// count); a child of a process that never went parallel keeps the full count.
std::atomic<bool> g_parallel_used{false};
std::atomic<bool> g_single_after_fork{false};

void after_fork_in_child() {
  if (g_parallel_used.load(std::memory_order_relaxed))
    g_single_after_fork.store(true, std::memory_order_relaxed);
}

const bool g_atfork_registered = [] {
  return pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0;
}();

int threads_now() {
  if (g_single_after_fork.load(std::memory_order_relaxed)) return 1;
  int t = g_threads.load(std::memory_order_relaxed);
  return t > 0 ? t : omp_get_max_threads();
}

// Buffers larger than the last-level cache are written with non-temporal stores: the data
// will not be read back soon, and streaming avoids reading each line before overwriting it.
int64_t nt_threshold_bytes() {
  static const int64_t v = [] {
    if (const char* e = std::getenv("FASTINIT_NT_THRESHOLD")) return static_cast<int64_t>(std::atoll(e));
    long llc = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return static_cast<int64_t>(llc > 0 ? llc : 32L << 20);
  }();
  return v;
}

// Whether every page under [p, p + bytes) is resident. Non-temporal stores only pay off on
// resident memory: a page touched for the first time is zeroed by the kernel inside the fault,
// which leaves its lines in cache, so plain stores then hit cache while streaming stores must
// evict them first (~20% slower on a freshly allocated 1 GiB float32 buffer on the development
// VM, e.g. parameters torch just allocated; no difference on resident memory). The store kind
// never changes a value. A range the kernel cannot report on counts as resident (the size rule
// alone decides, as before).
bool pages_resident(const char* p, int64_t bytes) {
#if defined(__linux__)
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  // Segments are at most one chunk (2^20 elements of <= 8 bytes): 2049 pages of 4 KiB.
  constexpr uintptr_t kMaxPages = 4096;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = a & ~(page - 1);
  const uintptr_t end = std::min(a + static_cast<uintptr_t>(bytes), start + kMaxPages * page);
  unsigned char vec[kMaxPages];
  if (end <= start || mincore(reinterpret_cast<void*>(start), end - start, vec) != 0) return true;
  const uintptr_t n = (end - start + page - 1) / page;
  for (uintptr_t i = 0; i < n; ++i)
    if (!(vec[i] & 1)) return false;
#else
  (void)p;
  (void)bytes;
#endif
  return true;
}

float bf16_decode(uint32_t h) { return ScalarLanes::from_bits(h << 16); }

float f16_decode(uint32_t h) {
  const uint32_t sign = h & 0x8000u, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  float v;
  if (e == 0) v = std::ldexp(static_cast<float>(m), -24);
  else if (e == 31) v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(m | 0x400u), static_cast<int>(e) - 25);
  return sign ? -v : v;
}

uint32_t bits16(double x, DType t) {
  const float f = static_cast<float>(x);
  if (std::isnan(f)) {
    // The kernels' rounding has no NaN case (no fill computes one from valid parameters), and
    // a NaN would land in its overflow branch as an infinity. A constant may be NaN: a quiet
    // NaN of the same sign and leading payload bits, as NumPy, ml_dtypes and torch convert it.
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    if (t == DType::BF16) return (b >> 16) | 0x40u;
    const uint32_t payload = (b >> 13) & 0x3FFu;
    return ((b >> 16) & 0x8000u) | 0x7C00u | (payload ? payload : 1u);
  }
  return t == DType::BF16 ? f32_to_bf16_bits<ScalarLanes>(f) : f32_to_f16_bits<ScalarLanes>(f);
}

double decode16(uint32_t h, DType t) { return t == DType::BF16 ? bf16_decode(h) : f16_decode(h); }

// The neighbour of a representable value v in the dtype, towards +inf (up) or -inf.
double step_dtype(double v, DType t, bool up) {
  const double dir = up ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  if (t == DType::F64) return std::nextafter(v, dir);
  if (t == DType::F32) return std::nextafterf(static_cast<float>(v), static_cast<float>(dir));
  if (std::isinf(v) && (v > 0) == up) return v;
  uint32_t h = bits16(v, t);
  if (v == 0) h = up ? 0x0001u : 0x8001u;
  else if ((v > 0) == up) h += 1;  // away from zero
  else h -= 1;                     // towards zero
  return decode16(h, t);
}

}  // namespace

double ceil_to_dtype(double x, DType t) {
  const double c = round_to_dtype(x, t);
  return c < x ? step_dtype(c, t, true) : c;
}

double floor_to_dtype(double x, DType t) {
  const double c = round_to_dtype(x, t);
  return c > x ? step_dtype(c, t, false) : c;
}

std::string dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
  }
  return "?";
}

double round_to_dtype(double x, DType t) {
  switch (t) {
    case DType::F64: return x;
    case DType::F32: return static_cast<double>(static_cast<float>(x));
    default: return decode16(bits16(x, t), t);
  }
}

void encode_value(double x, DType t, void* out) {
  switch (t) {
    case DType::F64: std::memcpy(out, &x, 8); return;
    case DType::F32: {
      const float f = static_cast<float>(x);
      std::memcpy(out, &f, 4);
      return;
    }
    default: {
      const auto h = static_cast<uint16_t>(bits16(x, t));
      std::memcpy(out, &h, 2);
    }
  }
}

[[noreturn]] void throw_unknown_dist(int id) {
  throw std::invalid_argument("fastinit: unknown distribution id " + std::to_string(id));
}

[[noreturn]] void throw_unknown_dtype(int id) {
  throw std::invalid_argument("fastinit: unknown dtype id " + std::to_string(id));
}

Dist dist_from_name(const std::string& name) {
  std::string known;
#define FASTINIT_X(E, T, m)                        \
  if (name == T::name) return Dist::E;             \
  known += (known.empty() ? "" : ", ") + std::string(T::name);
  FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X
  throw std::invalid_argument("fastinit: unknown distribution '" + name + "' (known: " + known + ")");
}

FillParams make_params(Dist dist, DType t, const std::vector<double>& p, uint64_t key,
                       uint64_t stream) {
  FillParams P{};
  P.dist = dist;
  P.dtype = t;
  P.key = key;
  P.stream = stream;
  visit_dtype(t, [](auto) {});  // an unknown dtype id throws here, before any setup
  switch (dist) {  // generated from the table; no default (-Werror=switch)
#define FASTINIT_X(E, T, m)                                                                    \
  case Dist::E:                                                                                \
    if (p.size() != static_cast<size_t>(T::nargs))                                             \
      throw std::invalid_argument(std::string("fastinit: ") + T::name + " takes " +            \
                                  std::to_string(T::nargs) + " parameters");                   \
    T::setup(t, p.data(), P.f.m, P.d.m);                                                       \
    return P;
    FASTINIT_DISTRIBUTIONS(FASTINIT_X)
#undef FASTINIT_X
  }
  throw_unknown_dist(static_cast<int>(dist));
}

FillParams make_params(const std::string& dist, DType t, const std::vector<double>& p,
                       uint64_t key, uint64_t stream) {
  return make_params(dist_from_name(dist), t, p, key, stream);
}

RunLayout make_layout(const BufferView& b, const Shard& s) {
  RunLayout L;
  const int nd = b.ndim();
  L.total = b.size();
  if (L.total == 0) return L;  // nothing is written (and an empty shard's global strides may not fit)
  std::vector<int64_t> gstride(nd);
  int64_t g = 1;
  for (int d = nd - 1; d >= 0; --d) {
    gstride[d] = g;
    g *= s.global_shape[d];
  }
  for (int d = 0; d < nd; ++d) L.base += s.global_offset[d] * gstride[d];
  // Keep the dimensions that vary, then merge neighbours that are contiguous both logically
  // and in memory, so a whole tensor (or a row-block shard) becomes one long run.
  struct Dim {
    int64_t n, gs, ms;
  };
  std::vector<Dim> dims;
  for (int d = 0; d < nd; ++d)
    if (b.shape[d] > 1) dims.push_back({b.shape[d], gstride[d], b.strides[d]});
  std::vector<Dim> merged;
  for (const Dim& dm : dims) {
    if (!merged.empty()) {
      Dim& o = merged.back();
      if (o.gs == dm.n * dm.gs && o.ms == dm.n * dm.ms) {
        o = Dim{o.n * dm.n, dm.gs, dm.ms};
        continue;
      }
    }
    merged.push_back(dm);
  }
  if (merged.empty()) merged.push_back({1, 1, 1});
  const Dim inner = merged.back();
  merged.pop_back();
  L.inner = inner.n;
  L.inner_gstride = inner.gs;
  L.inner_mstride = inner.ms;
  for (const Dim& dm : merged) {
    L.outer.push_back(dm.n);
    L.outer_g.push_back(dm.gs);
    L.outer_m.push_back(dm.ms);
  }
  return L;
}

namespace {

// Splits the runs into chunks of a few hundred thousand elements, hands them to OpenMP
// threads dynamically, and calls seg(global_start, memory_start, length) for each contiguous
// piece of a run. Chunks are multiples of 256 elements, so in the contiguous case every chunk
// starts on a whole SIMD group and no Philox block is generated twice.
// The chunks run in slices of a few per thread, one parallel region each; between slices the
// calling thread asks stop() (if given) whether to give up, so that a long fill answers
// Ctrl-C within a slice's time. A value depends on its position only, so neither the chunks
// nor the slices change a bit. Returns false when stop() said so (the buffer then holds the
// slices written so far).
// threads: 0 for the process-wide count (set_num_threads / OpenMP's default).
template <class Seg>
bool for_each_segment(const RunLayout& L, const Seg& seg, const StopCheck& stop, int threads = 0) {
  const int64_t N = L.total;
  if (N == 0) return true;
  if (threads <= 0) threads = threads_now();
  int64_t chunk = N / (static_cast<int64_t>(threads) * 8);
  chunk = std::clamp<int64_t>(chunk, 16384, int64_t{1} << 20);
  chunk = (chunk + 255) / 256 * 256;
  const int64_t nchunks = N / chunk + (N % chunk != 0);
  const int use = static_cast<int>(std::min<int64_t>(threads, nchunks));
  // Slices start at one chunk per thread and then aim at ~50 ms each, whatever the speed of
  // the machine and the distribution (a sanitized build is ten times slower).
  int64_t per_slice = stop ? use : nchunks;
  if (use > 1) note_parallel_use();
  for (int64_t c0 = 0, c1 = 0; c0 < nchunks; c0 = c1) {
    if (c0 > 0 && stop()) return false;
    c1 = std::min(nchunks, c0 + per_slice);
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(use) if (use > 1)
    for (int64_t c = c0; c < c1; ++c) {
      int64_t k = c * chunk;
      const int64_t kend = N - k > chunk ? k + chunk : N;
      while (k < kend) {
        const int64_t r = k / L.inner, j = k % L.inner;
        const int64_t len = std::min(L.inner - j, kend - k);
        int64_t gi = L.base + j * L.inner_gstride, mi = j * L.inner_mstride, rr = r;
        for (int d = static_cast<int>(L.outer.size()) - 1; d >= 0; --d) {
          const int64_t idx = rr % L.outer[d];
          rr /= L.outer[d];
          gi += idx * L.outer_g[d];
          mi += idx * L.outer_m[d];
        }
        seg(gi, mi, len);
        k += len;
      }
    }
    if (stop) {
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double want = static_cast<double>(c1 - c0) * 0.05 / std::max(dt, 1e-6);
      per_slice = std::clamp<int64_t>(static_cast<int64_t>(want), use, 64 * int64_t{use});
    }
  }
  return true;
}

}  // namespace

bool fill_cpu(const BufferView& b, const Shard& s, const FillParams& P, const StopCheck& stop) {
  // The kernels throw for an unknown (distribution, dtype) id, but an exception must not leave
  // an OpenMP region: check here, before anything is written.
  visit_fill(P.dist, P.dtype, [](auto, auto) {});
  const RunLayout L = make_layout(b, s);
  const int64_t isz = dtype_size(b.dtype);
  const KernelTable& kt = active_kernels();
  const KernelTable& st = scalar_kernels();
  const bool nt = L.total * isz > nt_threshold_bytes();
  char* const data = b.data;
  constexpr int64_t kTmp = 4096;
  return for_each_segment(L, [&](int64_t g, int64_t m, int64_t len) {
    if (L.inner_gstride == 1 && L.inner_mstride == 1) {
      char* const out = data + m * isz;
      kt.fill_range(P, out, g, len, nt && pages_resident(out, len * isz));
    } else if (L.inner_gstride == 1) {
      // Logically contiguous, strided in memory (e.g. a transposed view): generate a piece
      // contiguously, then scatter it.
      alignas(64) char tmp[kTmp * 8];
      for (int64_t o = 0; o < len; o += kTmp) {
        const int64_t n = std::min(kTmp, len - o);
        kt.fill_range(P, tmp, g + o, n, false);
        for (int64_t t = 0; t < n; ++t)
          std::memcpy(data + (m + (o + t) * L.inner_mstride) * isz, tmp + t * isz, isz);
      }
    } else {
      // Scattered logical positions (a column shard): one element, one Philox block.
      alignas(64) char tmp[64];
      for (int64_t t = 0; t < len; ++t) {
        st.fill_range(P, tmp, g + t * L.inner_gstride, 1, false);
        std::memcpy(data + (m + t * L.inner_mstride) * isz, tmp, isz);
      }
    }
  }, stop);
}

bool constant_cpu(const BufferView& b, double value, const StopCheck& stop, int threads) {
  Shard whole{b.shape, std::vector<int64_t>(b.shape.size(), 0)};
  const RunLayout L = make_layout(b, whole);
  const int64_t isz = dtype_size(b.dtype);
  alignas(8) unsigned char pattern[8];
  encode_value(value, b.dtype, pattern);
  char* const data = b.data;
  return for_each_segment(L, [&](int64_t, int64_t m, int64_t len) {
    auto fill_typed = [&](auto tag) {
      using T = decltype(tag);
      T v;
      std::memcpy(&v, pattern, sizeof v);
      if (L.inner_mstride == 1) {
        T* p = reinterpret_cast<T*>(data + m * isz);
        std::fill(p, p + len, v);
      } else {
        for (int64_t t = 0; t < len; ++t)
          std::memcpy(data + (m + t * L.inner_mstride) * isz, &v, sizeof v);
      }
    };
    if (isz == 8) fill_typed(uint64_t{});
    else if (isz == 4) fill_typed(uint32_t{});
    else fill_typed(uint16_t{});
  }, stop, threads);
}

std::vector<int64_t> scatter_offsets(const BufferView& b, const Shard& s, const int64_t* indices,
                                     int64_t count) {
  const int nd = b.ndim();
  std::vector<int64_t> out, idx(nd);
  for (int64_t i = 0; i < count; ++i) {
    int64_t k = indices[i];
    if (k < 0) continue;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t gs = s.global_shape[d];
      idx[d] = gs ? k % gs : 0;
      k = gs ? k / gs : 0;
    }
    if (k != 0) continue;  // beyond the global tensor
    int64_t m = 0;
    bool inside = true;
    for (int d = 0; d < nd && inside; ++d) {
      const int64_t local = idx[d] - s.global_offset[d];
      inside = local >= 0 && local < b.shape[d];
      if (inside) m += local * b.strides[d];
    }
    if (inside) out.push_back(m);
  }
  return out;
}

void scatter_constant_cpu(const BufferView& b, const Shard& s, double value,
                          const int64_t* indices, int64_t count) {
  const int64_t isz = dtype_size(b.dtype);
  alignas(8) unsigned char pattern[8];
  encode_value(value, b.dtype, pattern);
  for (const int64_t m : scatter_offsets(b, s, indices, count))
    std::memcpy(b.data + m * isz, pattern, isz);
}

namespace {
std::atomic<int> g_kernels_in_flight{0};
std::atomic<bool> g_exit_requested{false};
}  // namespace

// Sequentially consistent on purpose: a starting kernel increments and then reads the flag,
// the exit hook sets the flag and then reads the count; one of the two must see the other.
void kernel_started() { g_kernels_in_flight.fetch_add(1); }
void kernel_finished() { g_kernels_in_flight.fetch_sub(1); }
bool exit_requested() { return g_exit_requested.load(); }

void stop_kernels_at_exit() {
  g_exit_requested.store(true);
  // A slice takes ~50 ms (an orthogonal block can take longer): 5 s covers any of them.
  for (int i = 0; i < 5000 && g_kernels_in_flight.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void note_parallel_use() {
  (void)g_atfork_registered;
  g_parallel_used.store(true, std::memory_order_relaxed);
}

bool single_threaded_after_fork() { return g_single_after_fork.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("fastinit: the number of threads must be >= 1");
  g_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() { return threads_now(); }

}  // namespace fastinit
