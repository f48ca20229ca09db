// Launchers, device queries and host emulation for the CUDA kernels in fill_kernels.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda/cuda_fill.hpp"
#include "cuda/fill_kernels.cuh"

#ifndef FASTINIT_CUDA_ARCHITECTURES
#define FASTINIT_CUDA_ARCHITECTURES "unknown"
#endif

namespace fastinit {
namespace cuda {

namespace {

constexpr int kThreads = 256;

std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

std::string cc_text(int major, int minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

[[noreturn]] void throw_cuda_error(cudaError_t e, const std::string& what, int device) {
  cudaGetLastError();  // clear it, so that the next call does not report it again
  std::string msg = "fastinit: " + what + " failed on CUDA device " + std::to_string(device) +
                    " (" + error_text(e) + ")";
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction ||
      e == cudaErrorUnsupportedPtxVersion) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    cudaGetLastError();
    msg += ": this build of fastinit has no code for compute capability " + cc_text(major, minor) +
           " (CUDA_ARCHITECTURES " FASTINIT_CUDA_ARCHITECTURES
           "); rebuild with FASTINIT_CUDA_ARCHITECTURES including it";
#if CUDART_VERSION >= 13000
    if (major < 7 || (major == 7 && minor < 5))
      msg +=
          " (CUDA 13 compiles for compute capability 7.5 and newer: build with CUDA 12 for this "
          "GPU)";
#endif
  }
  throw std::runtime_error(msg);
}

void check(cudaError_t e, const char* what, int device) {
  if (e != cudaSuccess) throw_cuda_error(e, what, device);
}

// Makes `device` current for the launches and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice", device);
    if (prev_ != device)
      check(cudaSetDevice(device), "cudaSetDevice", device);
    else
      prev_ = -1;
  }
  ~DeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

cudaStream_t to_stream(StreamHandle h) {
  if (h == 0 || h == 1) return cudaStreamLegacy;
  if (h == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(h);
}

// Enough blocks to fill every multiprocessor, never more than the items need; the kernels
// stride over the rest.
unsigned grid_for(int64_t items, int device) {
  int sms = 1, per_sm = 2048;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute", device);
  check(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device),
        "cudaDeviceGetAttribute", device);
  const int64_t wave = static_cast<int64_t>(sms) * std::max(1, per_sm / kThreads);
  const int64_t need = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(wave, need)));
}

// The two ways of running the work items of one (distribution, dtype): the kernel, and the
// same items one after the other on the host (emulate_fill).
struct FillOps {
  void (*kernel)(FillParams, DeviceLayout, char*);
  void (*emulate)(const DeviceLayout&, const FillParams&, char*);
};

template <Dist D, DType T>
void emulate_fill_typed(const DeviceLayout& L, const FillParams& P, char* data) {
  for (int64_t t = 0; t < L.items; ++t) fill_item<D, T>(P, L, data, t);
}

// The one selection of the CUDA side, through params.hpp's visitor: an unknown
// (distribution, dtype) id throws std::invalid_argument before anything is launched.
FillOps fill_ops(const FillParams& P) {
  return visit_fill(P.dist, P.dtype, [](auto D, auto T) {
    constexpr Dist d = decltype(D)::value;
    constexpr DType t = decltype(T)::value;
    return FillOps{&fill_kernel<d, t>, &emulate_fill_typed<d, t>};
  });
}

// A contiguous buffer splits into single elements and 16-byte chunks; the chunk holds the
// pattern repeated.
ContiguousSpan contiguous_span(char* data, int64_t n, int itemsize) {
  ContiguousSpan s{};
  s.p = data;
  s.per_chunk = 16 / itemsize;
  const auto mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(data) % 16);
  s.head = std::min<int64_t>(n, mis == 0 ? 0 : (16 - mis) / itemsize);
  s.chunks = (n - s.head) / s.per_chunk;
  s.tail = n - s.head - s.chunks * s.per_chunk;
  return s;
}

uint4 chunk_of(uint64_t pattern, int itemsize) {
  uint32_t w0, w1;
  if (itemsize == 2)
    w0 = w1 = static_cast<uint32_t>(pattern & 0xFFFFu) * 0x10001u;
  else if (itemsize == 4)
    w0 = w1 = static_cast<uint32_t>(pattern);
  else {
    w0 = static_cast<uint32_t>(pattern);
    w1 = static_cast<uint32_t>(pattern >> 32);
  }
  return make_uint4(w0, w1, w0, w1);  // w0 == w1 below 8 bytes
}

bool contiguous(const DeviceLayout& L) { return L.nouter == 0 && L.inner_m == 1; }

template <class Bits>
void launch_constant(const DeviceLayout& L, Bits pattern, char* data, int device, cudaStream_t s) {
  if (contiguous(L)) {
    const ContiguousSpan span = contiguous_span(data, L.total, sizeof(Bits));
    const int64_t items = span.head + span.chunks + span.tail;
    constant_contiguous_kernel<Bits><<<grid_for(items, device), kThreads, 0, s>>>(
        span, pattern, chunk_of(pattern, sizeof(Bits)));
  } else {
    constant_kernel<Bits><<<grid_for(L.total, device), kThreads, 0, s>>>(L, pattern, data);
  }
  check(cudaGetLastError(), "launching the constant kernel", device);
}

template <class Bits>
void emulate_constant_typed(const DeviceLayout& L, Bits pattern, char* data) {
  if (contiguous(L)) {
    const ContiguousSpan span = contiguous_span(data, L.total, sizeof(Bits));
    const uint4 chunk = chunk_of(pattern, sizeof(Bits));
    for (int64_t t = 0; t < span.head + span.chunks + span.tail; ++t)
      constant_contiguous_item<Bits>(span, pattern, chunk, t);
  } else {
    for (int64_t t = 0; t < L.total; ++t) constant_item<Bits>(L, pattern, data, t);
  }
}

template <class Bits>
void launch_scatter(const int64_t* offsets, int64_t count, Bits pattern, char* data, int device,
                    cudaStream_t s) {
  const size_t bytes = static_cast<size_t>(count) * sizeof(int64_t);
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
  int64_t* d_offsets = nullptr;
  // Stream-ordered allocation: the offsets live exactly as long as the kernel needs them,
  // and the caller's stream is never waited on. (The copy from pageable memory returns once
  // the host array has been staged, so it may be freed right after.)
  if (pools)
    check(cudaMallocAsync(reinterpret_cast<void**>(&d_offsets), bytes, s), "cudaMallocAsync",
          device);
  else
    check(cudaMalloc(reinterpret_cast<void**>(&d_offsets), bytes), "cudaMalloc", device);
  cudaError_t e = cudaMemcpyAsync(d_offsets, offsets, bytes, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) {
    scatter_kernel<Bits>
        <<<grid_for(count, device), kThreads, 0, s>>>(d_offsets, count, pattern, data);
    e = cudaGetLastError();
  }
  if (pools) {
    cudaFreeAsync(d_offsets, s);
  } else {
    cudaStreamSynchronize(s);
    cudaFree(d_offsets);
  }
  check(e, "the scatter kernel", device);
}

}  // namespace

void fill(const DeviceLayout& L, const FillParams& P, char* data, int device, StreamHandle stream) {
  const auto k = fill_ops(P).kernel;  // first: an unknown id throws even for an empty buffer
  if (L.items == 0) return;
  DeviceGuard guard(device);
  k<<<grid_for(L.items, device), kThreads, 0, to_stream(stream)>>>(P, L, data);
  check(cudaGetLastError(), "launching the fill kernel", device);
}

void constant(const DeviceLayout& L, int itemsize, uint64_t pattern, char* data, int device,
              StreamHandle stream) {
  if (L.total == 0) return;
  DeviceGuard guard(device);
  const cudaStream_t s = to_stream(stream);
  if (contiguous(L)) {
    // One repeated byte (zeros above all): the driver's memset is the fastest write there is.
    bool bytewise = true;
    for (int i = 1; i < itemsize; ++i)
      bytewise = bytewise && ((pattern >> (8 * i)) & 0xFFu) == (pattern & 0xFFu);
    if (bytewise) {
      check(cudaMemsetAsync(data, static_cast<int>(pattern & 0xFFu),
                            static_cast<size_t>(L.total) * static_cast<size_t>(itemsize), s),
            "cudaMemsetAsync", device);
      return;
    }
  }
  if (itemsize == 2)
    launch_constant<uint16_t>(L, static_cast<uint16_t>(pattern), data, device, s);
  else if (itemsize == 4)
    launch_constant<uint32_t>(L, static_cast<uint32_t>(pattern), data, device, s);
  else
    launch_constant<uint64_t>(L, pattern, data, device, s);
}

void scatter(const int64_t* offsets, int64_t count, int itemsize, uint64_t pattern, char* data,
             int device, StreamHandle stream) {
  if (count == 0) return;
  DeviceGuard guard(device);
  const cudaStream_t s = to_stream(stream);
  if (itemsize == 2)
    launch_scatter<uint16_t>(offsets, count, static_cast<uint16_t>(pattern), data, device, s);
  else if (itemsize == 4)
    launch_scatter<uint32_t>(offsets, count, static_cast<uint32_t>(pattern), data, device, s);
  else
    launch_scatter<uint64_t>(offsets, count, pattern, data, device, s);
}

void emulate_fill(const DeviceLayout& L, const FillParams& P, char* data) {
  fill_ops(P).emulate(L, P, data);
}

void emulate_constant(const DeviceLayout& L, int itemsize, uint64_t pattern, char* data) {
  if (itemsize == 2)
    emulate_constant_typed<uint16_t>(L, static_cast<uint16_t>(pattern), data);
  else if (itemsize == 4)
    emulate_constant_typed<uint32_t>(L, static_cast<uint32_t>(pattern), data);
  else
    emulate_constant_typed<uint64_t>(L, pattern, data);
}

Unavailable unavailable(std::string* message) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();
  Unavailable cause = Unavailable::None;
  if (e != cudaSuccess || n == 0)
    cause = classify_unavailable(e == cudaErrorNoDevice || e == cudaSuccess, driver_version(),
                                 runtime_version());
  if (message) *message = unavailable_message(cause, driver_version(), runtime_version(),
                                              error_text(e));
  return cause;
}

int device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess) return n;
  cudaGetLastError();
  std::string message;
  if (unavailable(&message) == Unavailable::NoDevice) return 0;
  throw std::runtime_error("fastinit: " + message);
}

void check_device(int device) {
  const int n = device_count();
  std::string message;
  if (n == 0 && unavailable(&message) != Unavailable::None)
    throw std::runtime_error("fastinit: " + message);
  if (device < 0 || device >= n)
    throw std::runtime_error("fastinit: CUDA device " + std::to_string(device) +
                             " does not exist (" + std::to_string(n) + " visible)");
  DeviceGuard guard(device);
  cudaFuncAttributes attr;
  check(cudaFuncGetAttributes(
            &attr, reinterpret_cast<const void*>(&fill_kernel<Dist::Uniform, DType::F32>)),
        "loading the fill kernels", device);
}

DeviceInfo device_info(int device) {
  const int n = device_count();
  if (device < 0 || device >= n)
    throw std::runtime_error("fastinit: CUDA device " + std::to_string(device) +
                             " does not exist (" + std::to_string(n) + " visible)");
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", device);
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory = prop.totalGlobalMem;
  DeviceGuard guard(device);
  cudaFuncAttributes attr;
  info.has_code =
      cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(
                                       &fill_kernel<Dist::Uniform, DType::F32>)) == cudaSuccess;
  cudaGetLastError();
  return info;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  cudaDriverGetVersion(&v);
  cudaGetLastError();
  return v;
}

std::string architectures() { return FASTINIT_CUDA_ARCHITECTURES; }

}  // namespace cuda
}  // namespace fastinit
