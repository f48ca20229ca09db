// Host-side fill API: parameter setup (validation and the constants every device uses) and
// the strided/sharded driver that feeds contiguous runs to the per-ISA kernels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fastinit/buffer_view.hpp"
#include "fastinit/params.hpp"

namespace fastinit {

// Builds the kernel parameters for one fill: the distribution's arguments in the order of its
// table entry (distributions.hpp: "uniform": low, high; "normal": mean, std; "trunc_normal":
// mean, std, a, b). Throws std::invalid_argument (ValueError in Python) for an unknown
// distribution, a wrong argument count, or arguments that cannot be honoured for this dtype.
FillParams make_params(Dist dist, DType t, const std::vector<double>& args, uint64_t key,
                       uint64_t stream);
// The same by distribution name, as the Python layer passes it to every device's bindings.
FillParams make_params(const std::string& dist, DType t, const std::vector<double>& args,
                       uint64_t key, uint64_t stream);
Dist dist_from_name(const std::string& name);

// The logical layout of a (possibly sharded, possibly strided) buffer, reduced to runs: every
// run is `inner` elements whose global (logical) indices advance by `inner_gstride` and whose
// memory addresses advance by `inner_mstride` elements.
struct RunLayout {
  int64_t base = 0;                 // global index of the local element (0, ..., 0)
  std::vector<int64_t> outer;       // extents of the outer dimensions
  std::vector<int64_t> outer_g;     // their global strides
  std::vector<int64_t> outer_m;     // their memory strides
  int64_t inner = 1, inner_gstride = 1, inner_mstride = 1;
  int64_t total = 0;
};
RunLayout make_layout(const BufferView& b, const Shard& s);

// Asked between the slices of a long call, on the calling thread and outside any parallel
// region: true means stop now (e.g. a KeyboardInterrupt is pending). An empty one never stops.
using StopCheck = std::function<bool()>;

// Fills the buffer with the stream P on the CPU (OpenMP; GIL must already be released).
// Returns false when stop() ended it early; the buffer then holds whole slices of the values
// and the untouched old contents elsewhere.
bool fill_cpu(const BufferView& b, const Shard& s, const FillParams& P, const StopCheck& stop = {});
// Writes one constant (given as a double, rounded to the dtype) to every element, on `threads`
// threads (0: the process-wide count); stops as fill_cpu does.
bool constant_cpu(const BufferView& b, double value, const StopCheck& stop = {}, int threads = 0);
// Memory offsets (in elements, from the buffer's element 0) of the global flat indices that
// fall inside the shard; indices outside it (or outside the global tensor) are skipped.
std::vector<int64_t> scatter_offsets(const BufferView& b, const Shard& s, const int64_t* indices,
                                     int64_t count);
// Writes value at the given global flat indices that fall inside the shard.
void scatter_constant_cpu(const BufferView& b, const Shard& s, double value,
                          const int64_t* indices, int64_t count);

// The process-wide thread count of every fill (one per process: it lives in the core library
// that _core, _blas and _cuda share).
void set_num_threads(int n);
// Records that a parallel region with more than one thread is about to run (see the fork
// note in fill.cpp); every OpenMP region of fastinit calls it first.
void note_parallel_use();
// True in a child forked after the parent went parallel: kernels then use one thread.
bool single_threaded_after_fork();
int get_num_threads();

// Kernels running without the GIL, and interpreter exit. A daemon thread can be inside a
// kernel slice when the main thread finishes finalizing and calls exit(), which tears down
// OpenMP's pool and the process under the running kernel (a segfault). So every GIL-less call
// counts itself in flight; at exit (an atexit hook of the package, before finalization) no
// new kernel starts, running ones stop at their next slice boundary, and the hook waits for
// them (at most a few seconds).
void kernel_started();
void kernel_finished();
bool exit_requested();
void stop_kernels_at_exit();

// Encodes a value already representable in the dtype as its bit pattern (little-endian).
void encode_value(double x, DType t, void* out);

}  // namespace fastinit
