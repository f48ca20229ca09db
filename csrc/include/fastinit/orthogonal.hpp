// Orthogonal initialization: Haar-distributed (semi-)orthogonal matrices from Householder
// reflections drawn directly from the Philox normal stream (Stewart's method), accumulated in
// blocked compact-WY form on a BLAS (scipy-openblas32).
//
// ---------------------------------------------------------------- the frozen stream mapping
// The buffer is viewed as a logical rows x cols matrix A (torch's rule: rows = dim 0, cols =
// the other dimensions flattened row-major; Keras/JAX's rule: cols = the column axis, rows =
// the other dimensions flattened row-major in their order). Let M = max(rows, cols) and
// N = min(rows, cols). fastinit builds the M x N matrix Q with orthonormal columns and writes
// A = Q when rows >= cols, A = Q^T otherwise (torch's transposition).
//
// Reflector j (0 <= j < N) acts on rows j..M-1 of Q. Its Gaussian vector x_j (length M - j)
// is column j, from the diagonal down, of a *virtual M x N standard normal matrix* Z: the
// matrix fastinit.normal_(seed, stream) would write into an M x N buffer (the tall Gaussian
// matrix torch would factor), i.e. the ordinary normal stream of the (key, stream) pair at
//
//     x_j[t] = Z[j + t, j] = normal element with logical index  (j + t) * N + j,  0 <= t < M-j
//
// in the 32-bit class (float32, float16, bfloat16: make_params(Dist::Normal, DType::F32, {0, 1}, ...))
// or in the 64-bit class (float64: DType::F64). The strict upper triangle of Z is never used.
// Row r of Q's lower trapezoid is the contiguous stream range [r N, r N + min(r + 1, N)), and
// any element can be regenerated on its own, so a device or a shard needs no neighbours.
//
// From x = x_j (Stewart 1980; the reflector LAPACK's larfg would produce from x):
//     sg  = +1 if x[0] >= 0 (including -0.0) else -1
//     s   = sqrt(x[0]^2 + rest),  rest = sum_{t>=1} x[t]^2
//     v   = x with v[0] = x[0] + sg * s        (v[0] rounded once to the compute type)
//     tau = 2 / (rest + v[0]^2)                (so that H = I - tau v v^T is orthogonal for
//                                               the stored v, not just for the exact one)
//     d   = -sg                                (the sign correction: diag(R) > 0)
// all in double. rest is summed in a fixed order: the square (in double) of Z[r, j] is added to
// partial sum r mod 16 in increasing r, and the 16 partial sums are added pairwise
// (p[i] += p[i + w] for w = 8, 4, 2, 1). So v, tau and d are bit-identical for every thread
// count, SIMD path, memory layout and machine. x = 0 gives tau = 0, d = +1 (probability ~2^-25
// for a length-1 reflector in the 32-bit class, never seen for longer ones).
//
//     Q = gain * H_0 H_1 ... H_{N-1} [I_N; 0] diag(d_0, ..., d_{N-1})
//
// is Haar-distributed on the Stiefel manifold (QR of an M x N Gaussian matrix with a positive
// diagonal R, without forming the matrix or factoring it). When rows x cols and cols x rows are
// initialized with the same seed, the results are transposes of each other (up to BLAS rounding).
//
// ---------------------------------------------------------------- what is reproducible
// The reflectors are exactly reproducible. Q itself is computed by BLAS level-3 calls, whose
// rounding depends on the BLAS kernel (CPU family, OpenBLAS version) and may depend on the
// number of BLAS threads. Guaranteed: the same (seed, stream, shape, dtype class, thread count)
// on the same machine and OpenBLAS build gives the same bits, for any memory layout of the
// buffer (Q is always computed in one canonical order, see below). Across thread counts and
// machines values agree to rounding error (|dQ| ~ 1e-6 in float32, 1e-15 in float64).
//
// ---------------------------------------------------------------- algorithm and workspace
// Phase 1 (OpenMP): write the reflectors into Q's storage (like LAPACK's geqrf output: v_j in
// column j from row j down, zeros above) and compute tau_j, d_j; blocks of 256 columns per
// thread, so each column's sum is taken by one thread in row order.
// Phase 2 (BLAS): for the blocks of nb reflectors, last block first (as LAPACK's orgqr):
//     copy the block's V (L x ib) out; G = V^T V (syrk); T from G (larft recurrence, double);
//     trailing columns: Y = V^T C; Y = T Y (trmm); C -= V Y (two gemms);
//     own columns:      Q_panel = E diag(gain d) - V (T V1^T diag(gain d)) (one gemm).
//     (With |gain| > 1 a result with a non-finite element, which only a gain near the compute
//     type's largest value gives, is computed again with gain 1 and multiplied by gain.)
// About 2 M N^2 - 2/3 N^3 flops, half of what a QR of a Gaussian matrix costs (geqrf + orgqr).
// nb = 128, or 256 when N >= 2048.
// Workspace: (M + N) nb + 3 nb^2 elements of the compute type (float for the 32-bit class,
// double for float64), plus a full M x N compute-type matrix when the buffer cannot hold Q in
// place (16-bit dtypes, or a layout that is not the canonical one).
//
// Canonical order: Q is computed in the memory order that a C-contiguous rows x cols buffer
// gives it: row-major when rows >= cols (A = Q), column-major when rows < cols (A = Q^T is
// row-major). Buffers of the compute dtype whose logical matrix has that layout (any leading
// dimension) are computed in place; all others go through the workspace, then are copied out
// (and rounded to nearest even for float16/bfloat16).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fastinit/buffer_view.hpp"
#include "fastinit/params.hpp"

namespace fastinit {

struct OrthogonalOptions {
  double gain = 1.0;
  uint64_t key = 0;
  uint64_t stream = 0;
  int threads = 1;              // OpenMP threads and OpenBLAS threads
  bool sign_correction = true;  // false only to demonstrate that the tests catch it
  int64_t block = 0;            // reflectors per block (0: 128, or 256 when N >= 2048)
  // Asked between slices of the work (see fill.hpp); true stops the call, leaving the buffer
  // partly written. Slices: a few column blocks of phase 1, each block of phase 2, and in
  // float32 at most slice_cols trailing columns per BLAS call (0: kSliceCols), whether or not
  // stop is set (the slice width can change bits with OpenBLAS's AVX2 sgemm); float64 is not
  // sliced further.
  std::function<bool()> stop;
  int64_t slice_cols = 0;
};

// The logical matrix of a buffer under torch's rule (column_axis empty) or Keras/JAX's rule
// (column_axis in [0, ndim)): element (r, c) lives at data + (row_offset[r] + col_offset[c])
// elements.
struct MatrixLayout {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_offset, col_offset;
};
MatrixLayout matrix_layout(const BufferView& b, std::optional<int> column_axis);

// Reflector j's vector, tau and sign from its Gaussian vector x = Z[j:, j] (length n >= 1,
// x[t] in row first_row + t = j + t); v is written over x (only v[0] changes). Exposed so that
// other devices and tests can reproduce them.
template <class S>
void householder_from_normals(S* x, int64_t n, int64_t first_row, double* tau, double* d);

// A validated orthogonal fill of a whole buffer (CPU memory). Preparing it checks everything
// and allocates every workspace; run() only writes, from the Philox pair (key, stream). So the
// bindings prepare with the GIL held, only then take the seed (which fastinit.torch draws from
// torch's generator: a refused call must leave it untouched), and run without the GIL.
// The prepared fill refers to the BufferView: keep that alive until run() returns.
class OrthogonalFill {
 public:
  virtual ~OrthogonalFill() = default;
  // Returns false when stop ended it early (see OrthogonalOptions::stop); opt's key, stream
  // and stop at preparation are replaced by these.
  virtual bool run(uint64_t key, uint64_t stream, const std::function<bool()>& stop) = 0;
};

// gain * a Haar (semi-)orthogonal matrix.
std::unique_ptr<OrthogonalFill> prepare_orthogonal(const BufferView& b,
                                                   std::optional<int> column_axis,
                                                   const OrthogonalOptions& opt);

// JAX's delta_orthogonal: zeros everywhere except the spatial centre
// [(k1-1)/2, (k2-1)/2, ..., :, :], which gets the orthogonal matrix of its last two dimensions.
std::unique_ptr<OrthogonalFill> prepare_delta_orthogonal(const BufferView& b,
                                                         std::optional<int> column_axis,
                                                         const OrthogonalOptions& opt);

// The BLAS in use: config string, core name, threads.
std::string blas_config();
std::string blas_corename();
int blas_num_threads();
void blas_set_num_threads(int n);
int blas_parallel_mode();  // 0 sequential, 1 pthreads, 2 OpenMP

}  // namespace fastinit
