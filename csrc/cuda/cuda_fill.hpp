// The CUDA side of fastinit as plain C++ (no CUDA headers), so that the pybind11 bindings in
// csrc/bind_cuda.cpp are compiled by the host compiler alone. Implemented in fill_cuda.cu.
#pragma once

#include <cstdint>
#include <string>

#include "fastinit/params.hpp"

namespace fastinit {

struct RunLayout;

namespace cuda {

// A RunLayout flattened into a kernel parameter: runs of `inner` elements, consecutive in the
// logical (global) index, `inner_m` elements apart in memory; the runs enumerate the outer
// dimensions (the last fastest). Global positions that are not consecutive inside a run (a
// column of a shard) become outer dimensions with inner = 1.
struct DeviceLayout {
  static constexpr int kMaxOuter = 16;
  int64_t base = 0;   // global index of the local element (0, ..., 0)
  int64_t total = 0;  // elements in the buffer
  int64_t inner = 1, inner_m = 1;
  int64_t nruns = 1;
  int64_t slots = 1;  // work items (Philox blocks) per run: enough for any alignment of a run
  int64_t items = 0;  // work items of a random fill
  int32_t nouter = 0;
  int64_t outer[kMaxOuter] = {}, outer_g[kMaxOuter] = {}, outer_m[kMaxOuter] = {};
};

// Throws std::invalid_argument when the buffer has more non-mergeable dimensions than
// DeviceLayout::kMaxOuter. per_block: elements per Philox block (4, or 2 for float64).
DeviceLayout device_layout(const RunLayout& R, int per_block);

// The CUDA stream handle as passed by Python: 0 or 1 = the legacy default stream,
// 2 = the per-thread default stream, anything else a cudaStream_t.
using StreamHandle = uintptr_t;

// Launch on `stream` of `device` and return without waiting. Throw std::runtime_error with the
// CUDA error (and, for a missing kernel image, the device's compute capability and this
// build's architectures).
void fill(const DeviceLayout& L, const FillParams& P, char* data, int device, StreamHandle stream);
// Writes the bit pattern (the dtype's encoding of the value, in the low bytes) everywhere.
void constant(const DeviceLayout& L, int itemsize, uint64_t pattern, char* data, int device,
              StreamHandle stream);
// Writes the pattern at data + offsets[i] * itemsize (offsets on the host, in elements).
void scatter(const int64_t* offsets, int64_t count, int itemsize, uint64_t pattern, char* data,
             int device, StreamHandle stream);

// The same work items run one after the other on the CPU, writing host memory: the tests use
// these to check the kernels' indexing and value mapping where no GPU is present.
void emulate_fill(const DeviceLayout& L, const FillParams& P, char* data);
void emulate_constant(const DeviceLayout& L, int itemsize, uint64_t pattern, char* data);

// Why CUDA cannot be used: one cause, one message. The runtime answers cudaGetDeviceCount with
// cudaErrorInsufficientDriver both when libcuda.so.1 is missing and when it is too old, so the
// cause is told by the driver's version (0: no driver could be loaded), never by that error.
enum class Unavailable : int { None = 0, NoDriver = 1, DriverTooOld = 2, NoDevice = 3, Other = 4 };

inline std::string cuda_version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

inline Unavailable classify_unavailable(bool no_device_error, int driver, int runtime) {
  if (driver == 0) return Unavailable::NoDriver;
  if (driver < runtime) return Unavailable::DriverTooOld;
  if (no_device_error) return Unavailable::NoDevice;
  return Unavailable::Other;
}

// `detail`: the CUDA error, shown for Unavailable::Other only.
inline std::string unavailable_message(Unavailable cause, int driver, int runtime,
                                       const std::string& detail) {
  const std::string built = "this fastinit was built with CUDA " + cuda_version_text(runtime);
  switch (cause) {
    case Unavailable::None:
      return "";
    case Unavailable::NoDriver:
      return "no CUDA driver: libcuda.so.1 could not be loaded (install the NVIDIA driver; " +
             built + ")";
    case Unavailable::DriverTooOld:
      return "the CUDA driver is too old: it supports CUDA " + cuda_version_text(driver) +
             ", and " + built + " (update the NVIDIA driver, or build fastinit with a CUDA " +
             "toolkit no newer than " + cuda_version_text(driver) + ")";
    case Unavailable::NoDevice:
      return "no CUDA device: the driver (CUDA " + cuda_version_text(driver) +
             ") sees no GPU (check CUDA_VISIBLE_DEVICES)";
    case Unavailable::Other:
      break;
  }
  return "CUDA is unavailable: " + detail;
}

// Why this process cannot use CUDA now (Unavailable::None when it sees a device).
Unavailable unavailable(std::string* message);

// Devices visible to this process; 0 when the driver reports no device. Throws
// std::runtime_error with unavailable()'s message when there is no usable driver.
int device_count();
// Throws std::runtime_error if `device` does not exist or this build has no code for it.
void check_device(int device);
struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0, multiprocessors = 0;
  uint64_t total_memory = 0;
  bool has_code = false;  // this build has a kernel image (SASS or PTX) the device can run
};
DeviceInfo device_info(int device);
int runtime_version();        // CUDART_VERSION of the (static) runtime linked in
int driver_version();         // 0 when no driver is installed
std::string architectures();  // the CUDA_ARCHITECTURES this module was compiled for

}  // namespace cuda
}  // namespace fastinit
