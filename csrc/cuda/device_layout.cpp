// RunLayout (fill.cpp) -> the fixed-size kernel parameter of the CUDA kernels.
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_fill.hpp"
#include "fastinit/fill.hpp"

namespace fastinit {
namespace cuda {

DeviceLayout device_layout(const RunLayout& R, int per_block) {
  DeviceLayout L;
  L.base = R.base;
  L.total = R.total;
  std::vector<int64_t> n = R.outer, g = R.outer_g, m = R.outer_m;
  L.inner = R.inner;
  L.inner_m = R.inner_mstride;
  if (R.inner_gstride != 1) {
    // Logically scattered positions (e.g. a (rows, 1) shard of a wider matrix): every
    // element is a run of its own, one Philox block each, as on the CPU.
    n.push_back(R.inner);
    g.push_back(R.inner_gstride);
    m.push_back(R.inner_mstride);
    L.inner = 1;
    L.inner_m = 1;
  }
  if (n.size() > static_cast<size_t>(DeviceLayout::kMaxOuter))
    throw std::invalid_argument(
        "fastinit: the CUDA kernels handle buffers whose strides reduce to at most " +
        std::to_string(DeviceLayout::kMaxOuter + 1) + " dimensions; this one needs " +
        std::to_string(n.size() + 1) + " (make it contiguous first)");
  L.nouter = static_cast<int32_t>(n.size());
  L.nruns = 1;
  for (size_t d = 0; d < n.size(); ++d) {
    L.outer[d] = n[d];
    L.outer_g[d] = g[d];
    L.outer_m[d] = m[d];
    L.nruns *= n[d];
  }
  if (L.total == 0) {
    L.items = 0;
    return L;
  }
  const int64_t E = per_block;
  if (L.nouter == 0) {
    // One run: exactly the Philox blocks that it meets.
    L.slots = (L.base + L.total - 1) / E - L.base / E + 1;
    L.items = L.slots;
  } else {
    // A run of `inner` elements meets at most this many blocks, whatever its alignment.
    L.slots = (L.inner + 2 * E - 2) / E;
    L.items = L.nruns * L.slots;
  }
  return L;
}

}  // namespace cuda
}  // namespace fastinit
