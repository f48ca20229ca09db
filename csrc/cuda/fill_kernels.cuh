// CUDA fill kernels. One work item = one Philox block (4 elements of the 32-bit class, 2 of
// float64), so a thread computes exactly the values the CPU kernels compute for those
// positions and writes them with one vector store where they are consecutive and aligned.
// The item bodies are FASTINIT_HD so that fill_cuda.cu can also run them on the CPU
// (emulate_*), which is how the indexing is tested on machines without a GPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/block_values.cuh"
#include "cuda/cuda_fill.hpp"

FASTINIT_KERNEL_NS_BEGIN

template <class Bits>
FASTINIT_HD void store_bits(char* p, Bits v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<Bits*>(p) = v;
#else
  std::memcpy(p, &v, sizeof v);
#endif
}

// E consecutive elements at p, which is aligned to their total size (16 or 8 bytes).
template <class Bits, int E>
FASTINIT_HD void store_block(char* p, const Bits (&v)[E]) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Bits) == 4) {
    *reinterpret_cast<uint4*>(p) = make_uint4(v[0], v[1], v[2], v[3]);
  } else if constexpr (sizeof(Bits) == 8) {
    *reinterpret_cast<ulonglong2*>(p) = make_ulonglong2(v[0], v[1]);
  } else {  // four 16-bit values, little-endian
    *reinterpret_cast<uint2*>(p) =
        make_uint2(static_cast<uint32_t>(v[0]) | (static_cast<uint32_t>(v[1]) << 16),
                   static_cast<uint32_t>(v[2]) | (static_cast<uint32_t>(v[3]) << 16));
  }
#else
  std::memcpy(p, v, sizeof v);
#endif
}

// Global index g0 and memory offset m0 (in elements) of the first element of run r.
FASTINIT_HD void run_start(const cuda::DeviceLayout& L, int64_t r, int64_t& g0, int64_t& m0) {
  g0 = L.base;
  m0 = 0;
  for (int d = L.nouter - 1; d >= 0; --d) {
    const int64_t n = L.outer[d];
    const int64_t q = r / n;
    const int64_t i = r - q * n;
    r = q;
    g0 += i * L.outer_g[d];
    m0 += i * L.outer_m[d];
  }
}

// The run that work item t of a random fill belongs to, and the item's slot within it.
FASTINIT_HD void locate_item(const cuda::DeviceLayout& L, int64_t t, int64_t& g0, int64_t& m0,
                             int64_t& slot) {
  if (L.nouter == 0) {  // one run: item = Philox block, no division needed
    g0 = L.base;
    m0 = 0;
    slot = t;
    return;
  }
  const int64_t r = t / L.slots;
  slot = t - r * L.slots;
  run_start(L, r, g0, m0);
}

// Work item t of a random fill: the slot-th Philox block that meets its run.
template <Dist D, DType T>
FASTINIT_HD void fill_item(const FillParams& P, const cuda::DeviceLayout& L, char* data,
                           int64_t t) {
  using Bits = typename DTypeTraits<T>::Bits;
  constexpr int E = DTypeTraits<T>::kPerBlock;
  constexpr int64_t isz = sizeof(Bits);
  int64_t g0, m0, slot;
  locate_item(L, t, g0, m0, slot);
  const int64_t end = g0 + L.inner;
  // A spare slot of a run that needs fewer blocks: return before its block index is turned
  // into an element index, which may pass 2^63 - 1 at the end of the int64 range.
  const int64_t block = g0 / E + slot;
  if (block > (end - 1) / E) return;
  const int64_t e0 = block * E;  // global index of the block's first element
  const int64_t lo = g0 > e0 ? g0 - e0 : 0;  // the block's elements [lo, hi) lie in the run
  const int64_t hi = end - e0 < E ? end - e0 : E;  // (e0 + E may pass 2^63 - 1)
  if (hi <= lo) return;  // an empty run
  Bits v[E];
  block_values<D, T>(P, static_cast<uint64_t>(block), v);
  const int64_t off0 = m0 + (e0 - g0) * L.inner_m;  // memory offset of element e0
  if (lo == 0 && hi == E && L.inner_m == 1) {
    char* p = data + off0 * isz;
    if ((reinterpret_cast<uintptr_t>(p) & static_cast<uintptr_t>(E * isz - 1)) == 0) {
      store_block<Bits, E>(p, v);
      return;
    }
  }
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < E; ++k)
    if (k >= lo && k < hi) store_bits(data + (off0 + k * L.inner_m) * isz, v[k]);
}

// Work item t of a strided constant fill: element t of the buffer in logical order.
template <class Bits>
FASTINIT_HD void constant_item(const cuda::DeviceLayout& L, Bits pattern, char* data, int64_t t) {
  const int64_t r = t / L.inner, j = t - r * L.inner;
  int64_t g0, m0;
  run_start(L, r, g0, m0);
  store_bits(data + (m0 + j * L.inner_m) * static_cast<int64_t>(sizeof(Bits)), pattern);
}

// A contiguous constant fill of the elements at p: `head` single elements up to a 16-byte
// boundary, `chunks` 16-byte stores of per_chunk elements each, then `tail` single elements.
struct ContiguousSpan {
  char* p;
  int64_t head, chunks, tail;
  int per_chunk;
};

template <class Bits>
FASTINIT_HD void constant_contiguous_item(const ContiguousSpan& s, Bits pattern, uint4 chunk,
                                          int64_t t) {
  constexpr int64_t isz = sizeof(Bits);
  if (t >= s.head && t < s.head + s.chunks) {
    char* q = s.p + (s.head + (t - s.head) * s.per_chunk) * isz;
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint4*>(q) = chunk;
#else
    std::memcpy(q, &chunk, sizeof chunk);
#endif
    return;
  }
  const int64_t e = t < s.head ? t : t + s.chunks * (s.per_chunk - 1);
  store_bits(s.p + e * isz, pattern);
}

#if defined(__CUDACC__)
// Grid-stride loops over the work items; the layouts are __grid_constant__ so that indexing
// their arrays reads the parameter space instead of copying them to local memory.
template <Dist D, DType T>
__global__ void fill_kernel(const __grid_constant__ FillParams P,
                            const __grid_constant__ cuda::DeviceLayout L, char* data) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < L.items;
       t += step)
    fill_item<D, T>(P, L, data, t);
}

template <class Bits>
__global__ void constant_kernel(const __grid_constant__ cuda::DeviceLayout L, Bits pattern,
                                char* data) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < L.total;
       t += step)
    constant_item<Bits>(L, pattern, data, t);
}

template <class Bits>
__global__ void constant_contiguous_kernel(const ContiguousSpan s, Bits pattern, uint4 chunk) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n = s.head + s.chunks + s.tail;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += step)
    constant_contiguous_item<Bits>(s, pattern, chunk, t);
}

template <class Bits>
__global__ void scatter_kernel(const int64_t* offsets, int64_t count, Bits pattern, char* data) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < count;
       t += step)
    store_bits(data + offsets[t] * static_cast<int64_t>(sizeof(Bits)), pattern);
}
#endif

FASTINIT_KERNEL_NS_END
