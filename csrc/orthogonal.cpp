// Orthogonal initialization (see orthogonal.hpp for the stream mapping, the algorithm and what
// is reproducible). Phase 1 writes the reflectors with fastinit's own kernels and OpenMP;
// phase 2 accumulates them with OpenBLAS level-3 calls; phase 3 (only when the buffer cannot
// hold Q in place) copies the workspace out. The phases never overlap, and OpenBLAS is given
// the same thread count as OpenMP, so the two thread pools never compete for the cores.
#include "fastinit/orthogonal.hpp"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>

#include "fastinit/fill.hpp"
#include "fastinit/kernel_table.hpp"
#include "fastinit/lanes_scalar.hpp"
#include "fastinit/transforms.hpp"

namespace fastinit {

namespace {

// ---------------------------------------------------------------- BLAS, by precision

inline void gemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  scipy_cblas_sgemm(o, ta, tb, static_cast<blasint>(m), static_cast<blasint>(n),
                    static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
                    static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}
inline void gemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n,
                 int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                 int64_t ldb, double beta, double* c, int64_t ldc) {
  scipy_cblas_dgemm(o, ta, tb, static_cast<blasint>(m), static_cast<blasint>(n),
                    static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
                    static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}
inline void syrk_upper_t(CBLAS_ORDER o, int64_t n, int64_t k, const float* a, int64_t lda,
                         float* c, int64_t ldc) {
  scipy_cblas_ssyrk(o, CblasUpper, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(k),
                    1.0f, a, static_cast<blasint>(lda), 0.0f, c, static_cast<blasint>(ldc));
}
inline void syrk_upper_t(CBLAS_ORDER o, int64_t n, int64_t k, const double* a, int64_t lda,
                         double* c, int64_t ldc) {
  scipy_cblas_dsyrk(o, CblasUpper, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(k),
                    1.0, a, static_cast<blasint>(lda), 0.0, c, static_cast<blasint>(ldc));
}
inline void trmm(CBLAS_ORDER o, CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int64_t m,
                 int64_t n, const float* a, int64_t lda, float* b, int64_t ldb) {
  scipy_cblas_strmm(o, side, uplo, t, CblasNonUnit, static_cast<blasint>(m),
                    static_cast<blasint>(n), 1.0f, a, static_cast<blasint>(lda), b,
                    static_cast<blasint>(ldb));
}
inline void trmm(CBLAS_ORDER o, CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE t, int64_t m,
                 int64_t n, const double* a, int64_t lda, double* b, int64_t ldb) {
  scipy_cblas_dtrmm(o, side, uplo, t, CblasNonUnit, static_cast<blasint>(m),
                    static_cast<blasint>(n), 1.0, a, static_cast<blasint>(lda), b,
                    static_cast<blasint>(ldb));
}

// One lock for every call into OpenBLAS from here: the thread count is a process-wide setting
// of the library, so two concurrent calls must not change it under each other.
std::mutex& blas_mutex() {
  static std::mutex m;
  return m;
}

// A child forked while another thread of the parent held the lock would wait for it forever:
// the holder does not exist in the child, so the child starts with a fresh, unlocked one.
void reset_blas_mutex_in_child() { new (&blas_mutex()) std::mutex(); }
const bool g_blas_atfork = [] {
  return pthread_atfork(nullptr, nullptr, &reset_blas_mutex_in_child) == 0;
}();

// Trailing columns updated per BLAS call in phase 2 when the call may be interrupted: ~0.06 s
// of work on two idle cores for the largest blocks (M = 8192, 256 reflectors). Narrower slices
// answer sooner but cost more: 512 columns made a 2048^2 call 1.66x slower on the loaded VM
// (every BLAS call synchronizes its threads), 2048 columns nothing measurable.
constexpr int64_t kSliceCols = 2048;

// Reflectors per block: larger blocks give the trailing gemms more work per pass over memory,
// smaller ones less overhead (syrk, T, the panel) on small matrices; measured on AVX-512.
int64_t default_block(int64_t N) { return N >= 2048 ? 256 : 128; }

// Below this many elements a parallel region costs more than it saves (the Haar tests call
// orthogonal_ on 4 x 4 matrices tens of thousands of times).
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

template <class S>
constexpr DType compute_dtype() {
  return sizeof(S) == 8 ? DType::F64 : DType::F32;
}

// ---------------------------------------------------------------- reflectors (phase 1)

// Column sums of squares of a block of reflectors, kept as 16 partial sums per column: element
// Z[r, j] goes to partial sum r mod 16. Rows arrive in increasing order, so every partial sum
// is accumulated in the same order by every thread count and layout, and the update of one
// row is a plain vector operation over the block's columns.
class ColumnSquares {
 public:
  // acc: 16 * width doubles of scratch, zeroed here.
  ColumnSquares(double* acc, int64_t width) : w_(width), acc_(acc) {
    std::fill(acc, acc + 16 * width, 0.0);
  }
  // Adds e[k]^2 for the entries k < n of row r (columns j0 + k of the block).
  template <class S>
  void add_row(int64_t r, const S* e, int64_t n) {
    double* a = acc_ + (r & 15) * w_;
    for (int64_t k = 0; k < n; ++k) {
      const double v = static_cast<double>(e[k]);
      a[k] += v * v;
    }
  }
  // The 16 partial sums of column k, added pairwise in a fixed tree.
  double total(int64_t k) const {
    double t[16];
    for (int l = 0; l < 16; ++l) t[l] = acc_[l * w_ + k];
    for (int w = 8; w >= 1; w /= 2)
      for (int i = 0; i < w; ++i) t[i] = t[i] + t[i + w];
    return t[0];
  }

 private:
  int64_t w_;
  double* acc_;
};

// v[0], tau, d from x[0] and the sum of squares of the rest (see orthogonal.hpp).
template <class S>
S finish_reflector(S x0s, double rest, double* tau, double* d) {
  const double x0 = static_cast<double>(x0s);
  const double norm2 = x0 * x0 + rest;
  if (!(norm2 > 0)) {
    *tau = 0;
    *d = 1;
    return S(1);
  }
  const double s = std::sqrt(norm2);
  const double sg = x0 >= 0 ? 1.0 : -1.0;  // -0.0 >= 0: the sign bit of a zero is ignored
  const S v0 = static_cast<S>(x0 + sg * s);
  const double v0d = static_cast<double>(v0);
  *tau = 2.0 / (rest + v0d * v0d);
  *d = -sg;
  return v0;
}

// Columns per block of phase 1: one contiguous Philox run per row and block, a few dozen
// blocks to balance over the threads.
constexpr int64_t kPhase1Width = 256;
constexpr int64_t kPhase1Rows = 16;  // rows per tile of the column-major path

// Phase 1's threads: one per block of columns at most (the blocks are its units of work), so
// its scratch is sized by the work, not by set_num_threads.
inline int phase1_threads(int64_t N, int threads) {
  return static_cast<int>(std::min<int64_t>(threads, (N + kPhase1Width - 1) / kPhase1Width));
}

// Per-thread scratch of phase 1, allocated before the first write (an exception cannot leave
// an OpenMP region, and a failed allocation must leave the buffer untouched).
template <class S>
struct Phase1Scratch {
  explicit Phase1Scratch(int threads)
      : squares(static_cast<size_t>(threads) * 16 * kPhase1Width),
        x0(static_cast<size_t>(threads) * kPhase1Width),
        tile(static_cast<size_t>(threads) * kPhase1Rows * kPhase1Width) {}
  double* squares_of(int t) { return squares.data() + static_cast<size_t>(t) * 16 * kPhase1Width; }
  S* x0_of(int t) { return x0.data() + static_cast<size_t>(t) * kPhase1Width; }
  S* tile_of(int t) { return tile.data() + static_cast<size_t>(t) * kPhase1Rows * kPhase1Width; }
  std::vector<double> squares;
  std::vector<S> x0, tile;
};

// Phase 1 for row-major Q: row r of Q is row r of Z up to the diagonal, contiguous in memory
// and in the stream, so each block of columns is written row by row in place.
template <class S>
void write_reflectors_rowmajor(S* q, int64_t M, int64_t N, int64_t ld, const FillParams& P,
                               double* tau, double* d, int threads, Phase1Scratch<S>& scratch,
                               int64_t blk0, int64_t blk1) {
  const KernelTable& kt = active_kernels();
  const bool par = threads > 1 && M * N >= kParallelMinElements;
  if (par) note_parallel_use();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (par)
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t j0 = blk * kPhase1Width, j1 = std::min(N, j0 + kPhase1Width);
    const int tid = omp_get_thread_num();
    ColumnSquares sq(scratch.squares_of(tid), j1 - j0);
    S* const x0 = scratch.x0_of(tid);
    for (int64_t r = 0; r < M; ++r) {
      S* row = q + r * ld;
      const int64_t b = std::min(j1, r + 1);  // columns j <= r hold Z[r, j]
      if (b > j0) kt.fill_range(P, row + j0, r * N + j0, b - j0, false);
      std::fill(row + std::max(b, j0), row + j1, S(0));  // above the diagonal
      const int64_t sub = std::min(b, r) - j0;          // strictly below the diagonal
      if (sub > 0) sq.add_row(r, row + j0, sub);
      if (r >= j0 && r < j1) x0[r - j0] = row[r];
    }
    for (int64_t j = j0; j < j1; ++j)
      q[j * ld + j] = finish_reflector(x0[j - j0], sq.total(j - j0), tau + j, d + j);
  }
}

// Phase 1 for column-major Q: reflector j is contiguous in memory but strided in the stream,
// so a block of columns is generated 16 rows at a time into a small row-major tile and stored
// transposed (16 rows of one column are one 64-byte line for float32).
template <class S>
void write_reflectors_colmajor(S* q, int64_t M, int64_t N, int64_t ld, const FillParams& P,
                               double* tau, double* d, int threads, Phase1Scratch<S>& scratch,
                               int64_t blk0, int64_t blk1) {
  constexpr int64_t C = kPhase1Rows;
  const KernelTable& kt = active_kernels();
  const bool par = threads > 1 && M * N >= kParallelMinElements;
  if (par) note_parallel_use();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (par)
  for (int64_t blk = blk0; blk < blk1; ++blk) {
    const int64_t j0 = blk * kPhase1Width, j1 = std::min(N, j0 + kPhase1Width), w = j1 - j0;
    const int tid = omp_get_thread_num();
    ColumnSquares sq(scratch.squares_of(tid), w);
    S* const x0 = scratch.x0_of(tid);
    S* const tile = scratch.tile_of(tid);
    for (int64_t j = j0; j < j1; ++j) std::fill(q + j * ld, q + j * ld + j0, S(0));
    for (int64_t r0 = j0; r0 < M; r0 += C) {
      const int64_t rn = std::min(C, M - r0);
      for (int64_t rr = 0; rr < rn; ++rr) {
        const int64_t r = r0 + rr;
        S* t = tile + rr * w;
        const int64_t b = std::min(j1, r + 1);
        if (b > j0) kt.fill_range(P, t, r * N + j0, b - j0, false);
        std::fill(t + std::max<int64_t>(b - j0, 0), t + w, S(0));
        const int64_t sub = std::min(b, r) - j0;
        if (sub > 0) sq.add_row(r, t, sub);
        if (r < j1) x0[r - j0] = t[r - j0];
      }
      for (int64_t k = 0; k < w; ++k) {
        S* dst = q + (j0 + k) * ld + r0;
        for (int64_t rr = 0; rr < rn; ++rr) dst[rr] = tile[rr * w + k];
      }
    }
    for (int64_t j = j0; j < j1; ++j)
      q[j * ld + j] = finish_reflector(x0[j - j0], sq.total(j - j0), tau + j, d + j);
  }
}

// Phase 1 in slices of a few column blocks per thread, asking opt.stop between them (the
// blocks are independent, so the slicing changes no bit). Returns false when stopped.
template <class S>
bool write_reflectors(S* q, int64_t M, int64_t N, int64_t ld, bool row_major, const FillParams& P,
                      double* tau, double* d, const OrthogonalOptions& opt,
                      Phase1Scratch<S>& scratch) {
  const int64_t nblk = (N + kPhase1Width - 1) / kPhase1Width;
  const int threads = phase1_threads(N, opt.threads);
  const int64_t per_slice = opt.stop ? static_cast<int64_t>(threads) : nblk;
  for (int64_t b0 = 0; b0 < nblk; b0 += per_slice) {
    if (b0 > 0 && opt.stop()) return false;
    const int64_t b1 = std::min(nblk, b0 + per_slice);
    if (row_major)
      write_reflectors_rowmajor(q, M, N, ld, P, tau, d, threads, scratch, b0, b1);
    else
      write_reflectors_colmajor(q, M, N, ld, P, tau, d, threads, scratch, b0, b1);
  }
  return true;
}

// ---------------------------------------------------------------- accumulation (phase 2)

// Phase 2's workspace, (M + N) nb + 3 nb^2 + nb elements of S and 3 nb^2 + nb doubles,
// allocated before the first write.
template <class S>
struct Phase2Scratch {
  Phase2Scratch(int64_t M, int64_t N, int64_t nb)
      : nb(nb), V(new S[M * nb]), Y(new S[nb * N]), G(new S[nb * nb]), T(new S[nb * nb]),
        W(new S[nb * nb]), gd(new S[nb]), Td(nb * nb), g(nb), col(nb) {}
  int64_t nb;
  std::unique_ptr<S[]> V, Y, G, T, W, gd;
  std::vector<double> Td, g, col;
};

int64_t block_size(int64_t N, const OrthogonalOptions& opt) {
  return std::max<int64_t>(1, std::min(N, opt.block > 0 ? opt.block : default_block(N)));
}

template <class S>
bool accumulate_reflectors(S* q, int64_t M, int64_t N, int64_t ld, bool row_major,
                           const double* tau, const double* d, const OrthogonalOptions& opt,
                           Phase2Scratch<S>& w) {
  const CBLAS_ORDER O = row_major ? CblasRowMajor : CblasColMajor;
  auto at = [row_major](int64_t i, int64_t j, int64_t l) {
    return row_major ? i * l + j : i + j * l;
  };
  const int64_t nb = w.nb;
  S *const V = w.V.get(), *const Y = w.Y.get(), *const G = w.G.get(), *const T = w.T.get(),
           *const W = w.W.get(), *const gd = w.gd.get();
  std::vector<double>&Td = w.Td, &g = w.g, &col = w.col;
  const int64_t nblocks = (N + nb - 1) / nb;
  for (int64_t bi = nblocks - 1; bi >= 0; --bi) {
    const int64_t i = bi * nb, ib = std::min(nb, N - i), L = M - i, c = N - i - ib;
    const int64_t ldv = row_major ? ib : L;
    // The block's reflectors, with the explicit zeros above the diagonal, copied out of Q
    // (the panel is overwritten below; a contiguous copy also packs faster).
    if (row_major)
      for (int64_t r = 0; r < L; ++r) std::memcpy(&V[r * ib], q + (i + r) * ld + i, ib * sizeof(S));
    else
      for (int64_t k = 0; k < ib; ++k) std::memcpy(&V[k * L], q + (i + k) * ld + i, L * sizeof(S));

    // T of the compact-WY form H_i ... H_{i+ib-1} = I - V T V^T (LAPACK's larft recurrence,
    // with V^T V from one syrk): T(0:k, k) = -tau_k T(0:k, 0:k) G(0:k, k), in double.
    // Column-major Td and a column-oriented product keep the inner loop free of reductions.
    syrk_upper_t(O, ib, L, V, ldv, G, ib);
    std::fill(Td.begin(), Td.end(), 0.0);
    for (int64_t k = 0; k < ib; ++k) {
      const double tk = tau[i + k];
      for (int64_t p = 0; p < k; ++p) g[p] = static_cast<double>(G[at(p, k, ib)]);
      std::fill(col.begin(), col.begin() + k, 0.0);
      for (int64_t p = 0; p < k; ++p) {
        const double gp = g[p];
        const double* tcol = &Td[p * nb];
        for (int64_t r = 0; r <= p; ++r) col[r] += tcol[r] * gp;
      }
      double* tk_col = &Td[k * nb];
      for (int64_t r = 0; r < k; ++r) tk_col[r] = -tk * col[r];
      tk_col[k] = tk;
    }
    for (int64_t p = 0; p < ib; ++p)
      for (int64_t k = 0; k < ib; ++k)
        T[at(p, k, ib)] = p <= k ? static_cast<S>(Td[k * nb + p]) : S(0);

    // Columns to the right: C = (I - V T V^T) C. The block's own rows of C are still zero, so
    // V^T C needs only V's rows below the block. float32 takes the columns in slices, so
    // that Ctrl-C is answered within one; always, interruptible or not, because the slicing
    // can change bits: OpenBLAS's AVX-512 sgemm gives each column the same bits for any width,
    // its AVX2 kernels (Haswell and Zen core types) do not (up to ~1e-7 apart, measured on
    // AMD Zen 5). float64 keeps whole blocks (dgemm differs by width on every core type) and
    // answers Ctrl-C once per block.
    const int64_t cslice =
        sizeof(S) != 4 ? c : (opt.slice_cols > 0 ? opt.slice_cols : kSliceCols);
    if (bi != nblocks - 1 && opt.stop && opt.stop()) return false;
    for (int64_t c0 = 0; c0 < c; c0 += cslice) {
      if (c0 > 0 && opt.stop && opt.stop()) return false;
      const int64_t cn = std::min(cslice, c - c0);
      const S* V2 = V + at(ib, 0, ldv);
      const S* C2 = q + at(i + ib, i + ib + c0, ld);
      const int64_t ldy = row_major ? cn : ib;
      gemm(O, CblasTrans, CblasNoTrans, ib, cn, L - ib, S(1), V2, ldv, C2, ld, S(0), Y, ldy);
      trmm(O, CblasLeft, CblasUpper, CblasNoTrans, ib, cn, T, ib, Y, ldy);
      gemm(O, CblasNoTrans, CblasNoTrans, L, cn, ib, S(-1), V, ldv, Y, ldy, S(1),
           q + at(i, i + ib + c0, ld), ld);
    }

    // The block's own columns start as E diag(gain d) (E: the identity's columns), so
    // (I - V T V^T) E diag(gain d) = E diag(gain d) - V (T V1^T diag(gain d)), V1 the top
    // ib x ib (lower triangular) part of V: one trmm and one gemm, no unblocked sweep.
    std::memcpy(W, T, ib * ib * sizeof(S));
    trmm(O, CblasRight, CblasLower, CblasTrans, ib, ib, V, ldv, W, ib);
    for (int64_t k = 0; k < ib; ++k)
      gd[k] = static_cast<S>(opt.gain * (opt.sign_correction ? d[i + k] : 1.0));
    for (int64_t p = 0; p < ib; ++p)
      for (int64_t k = 0; k < ib; ++k) W[at(p, k, ib)] *= gd[k];
    gemm(O, CblasNoTrans, CblasNoTrans, L, ib, ib, S(-1), V, ldv, W, ib, S(0),
         q + at(i, i, ld), ld);
    for (int64_t k = 0; k < ib; ++k) q[at(i + k, i + k, ld)] += gd[k];
  }
  return true;
}

// ---------------------------------------------------------------- copy-out (phase 3)

template <class S>
void copy_out(const S* ws, const BufferView& b, const MatrixLayout& lay, int threads) {
  const int64_t isz = dtype_size(b.dtype);
  const int64_t cols = lay.cols;
  bool unit = true;
  for (int64_t c = 0; c < cols && unit; ++c) unit = lay.col_offset[c] == c;
  const DType t = b.dtype;
  const bool par = threads > 1 && lay.rows * cols >= kParallelMinElements;
  if (par) note_parallel_use();
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
  for (int64_t r = 0; r < lay.rows; ++r) {
    const S* src = ws + r * cols;
    char* base = b.data + lay.row_offset[r] * isz;
    auto put = [&](auto conv) {
      using O = decltype(conv(S(0)));
      if (unit) {
        O* dst = reinterpret_cast<O*>(base);
        for (int64_t c = 0; c < cols; ++c) dst[c] = conv(src[c]);
      } else {
        for (int64_t c = 0; c < cols; ++c) {
          const O v = conv(src[c]);
          std::memcpy(base + lay.col_offset[c] * isz, &v, sizeof v);
        }
      }
    };
    if (t == DType::F64) put([](S v) { return static_cast<double>(v); });
    else if (t == DType::F32) put([](S v) { return static_cast<float>(v); });
    else if (t == DType::BF16)
      put([](S v) {
        return static_cast<uint16_t>(f32_to_bf16_bits<ScalarLanes>(static_cast<float>(v)));
      });
    else
      put([](S v) {
        return static_cast<uint16_t>(f32_to_f16_bits<ScalarLanes>(static_cast<float>(v)));
      });
  }
}

// ---------------------------------------------------------------- the whole job

void check_blas_int(int64_t v, const char* what) {
  if (v > INT_MAX)
    throw std::invalid_argument(std::string("fastinit: orthogonal_: ") + what + " = " +
                                std::to_string(v) +
                                " exceeds what the 32-bit BLAS can address (2^31 - 1)");
}

// Everything that can fail (sizes, allocations) happens in the constructor; run() only
// writes. S is the compute type: double for float64 buffers, float for the others.
template <class S>
class OrthogonalJob final : public OrthogonalFill {
 public:
  OrthogonalJob(const BufferView& b, std::optional<int> column_axis, const OrthogonalOptions& opt)
      : b_(b), opt_(opt) {
    if (b.ndim() < 2)
      throw std::invalid_argument("Only tensors with 2 or more dimensions are supported");
    if (opt.threads < 1) throw std::invalid_argument("fastinit: threads must be >= 1");
    if (!std::isfinite(opt.gain)) throw std::invalid_argument("fastinit: gain must be finite");
    lay_ = matrix_layout(b, column_axis);
    if (lay_.rows == 0 || lay_.cols == 0) return;  // nothing to write, as torch
    tall_ = lay_.rows >= lay_.cols;
    M_ = tall_ ? lay_.rows : lay_.cols;
    N_ = tall_ ? lay_.cols : lay_.rows;
    check_blas_int(M_, "max(rows, cols)");
    // In place when the logical matrix is row-major with unit column stride (any leading
    // dimension >= cols): that is the canonical order, whatever the shape.
    bool row_major_a = true;
    for (int64_t c = 0; c < lay_.cols && row_major_a; ++c) row_major_a = lay_.col_offset[c] == c;
    const int64_t sr = lay_.rows > 1 ? lay_.row_offset[1] : lay_.cols;
    for (int64_t r = 0; r < lay_.rows && row_major_a; ++r)
      row_major_a = lay_.row_offset[r] == r * sr;
    row_major_a = row_major_a && sr >= lay_.cols && sr <= INT_MAX;
    const DType own = sizeof(S) == 8 ? DType::F64 : DType::F32;
    in_place_ = row_major_a && b.dtype == own;
    ld_ = in_place_ ? sr : lay_.cols;
    if (!in_place_) {
      check_blas_int(lay_.cols, "cols");
      ws_.reset(new S[static_cast<size_t>(lay_.rows * lay_.cols)]);
    }
    tau_.resize(N_);
    d_.resize(N_);
    p1_ = std::make_unique<Phase1Scratch<S>>(phase1_threads(N_, opt.threads));
    p2_ = std::make_unique<Phase2Scratch<S>>(M_, N_, block_size(N_, opt));
  }

  bool run(uint64_t key, uint64_t stream, const std::function<bool()>& stop) override {
    opt_.key = key;
    opt_.stream = stream;
    opt_.stop = stop;
    return run();
  }

 private:
  bool run() {
    if (lay_.rows == 0 || lay_.cols == 0) return true;
    S* q = in_place_ ? reinterpret_cast<S*>(b_.data) : ws_.get();
    const bool q_row_major = tall_;  // A row-major: A = Q (tall) or A = Q^T (wide)
    const FillParams P = make_params(Dist::Normal, compute_dtype<S>(), {0.0, 1.0}, opt_.key, opt_.stream);
    const int threads = opt_.threads;
    std::lock_guard<std::mutex> lock(blas_mutex());
    auto compute = [&](const OrthogonalOptions& o) {
      if (!write_reflectors(q, M_, N_, ld_, q_row_major, P, tau_.data(), d_.data(), o, *p1_))
        return false;
      if (scipy_openblas_get_num_threads() != threads) scipy_openblas_set_num_threads(threads);
      return accumulate_reflectors(q, M_, N_, ld_, q_row_major, tau_.data(), d_.data(), o, *p2_);
    };
    if (!compute(opt_)) return false;
    // The gain enters with the block's own columns, before the last reflector products, so
    // their intermediate values scale with it and overflow when |gain| nears the type's
    // largest value (gain 3e38 in float32), where torch, which scales its QR factor at the
    // end, stays finite. Every value is linear in the gain, so |gain| <= 1 cannot overflow;
    // above, a result with a non-finite element is redone with gain 1 and scaled once at the
    // end. Results that came out finite keep their bits. (The check reads q once: ~1% of
    // the call at 4096 x 4096.)
    if (std::fabs(opt_.gain) > 1.0 && !all_finite(q)) {
      OrthogonalOptions unit = opt_;
      unit.gain = 1.0;
      if (!compute(unit)) return false;
      scale(q, static_cast<S>(opt_.gain));
    }
    if (!in_place_) {
      if (opt_.stop && lay_.rows * lay_.cols >= kParallelMinElements && opt_.stop()) return false;
      copy_out(q, b_, lay_, threads);
    }
    return true;
  }

  // The logical matrix in q: lay_.rows rows of lay_.cols elements, ld_ apart (A = Q for a
  // tall matrix, Q^T for a wide one, row-major either way).
  bool all_finite(const S* q) const {
    for (int64_t r = 0; r < lay_.rows; ++r) {
      const S* row = q + r * ld_;
      bool finite = true;  // no early exit within a row: the comparisons vectorize
      for (int64_t c = 0; c < lay_.cols; ++c) finite &= std::fabs(row[c]) <= std::numeric_limits<S>::max();
      if (!finite) return false;
    }
    return true;
  }
  void scale(S* q, S g) const {
    for (int64_t r = 0; r < lay_.rows; ++r)
      for (int64_t c = 0; c < lay_.cols; ++c) q[r * ld_ + c] *= g;
  }

  const BufferView& b_;
  OrthogonalOptions opt_;
  MatrixLayout lay_;
  bool tall_ = true, in_place_ = false;
  int64_t M_ = 0, N_ = 0, ld_ = 0;
  std::unique_ptr<S[]> ws_;
  std::vector<double> tau_, d_;
  std::unique_ptr<Phase1Scratch<S>> p1_;
  std::unique_ptr<Phase2Scratch<S>> p2_;
};

// Zeros everywhere, then the centre's orthogonal matrix; the centre's job validates and
// allocates when this is prepared, before the zeros are written.
class DeltaOrthogonalJob final : public OrthogonalFill {
 public:
  DeltaOrthogonalJob(const BufferView& b, std::optional<int> column_axis,
                     const OrthogonalOptions& opt)
      : b_(b), threads_(opt.threads) {
    const int nd = b.ndim();
    if (nd < 3 || nd > 5)
      throw std::invalid_argument("Delta orthogonal initializer requires a 3D, 4D or 5D shape.");
    if (b.shape[nd - 1] < b.shape[nd - 2])
      throw std::invalid_argument("`fan_in` must be less or equal than `fan_out`. ");
    if (b.size() == 0) return;  // nothing to write
    centre_.dtype = b.dtype;
    centre_.device_type = b.device_type;
    centre_.device_id = b.device_id;
    int64_t off = 0;
    for (int k = 0; k < nd - 2; ++k) off += ((b.shape[k] - 1) / 2) * b.strides[k];
    centre_.data = b.data + off * dtype_size(b.dtype);
    centre_.shape = {b.shape[nd - 2], b.shape[nd - 1]};
    centre_.strides = {b.strides[nd - 2], b.strides[nd - 1]};
    centre_job_ = prepare_orthogonal(centre_, column_axis, opt);
  }

  bool run(uint64_t key, uint64_t stream, const std::function<bool()>& stop) override {
    if (!centre_job_) return true;
    return constant_cpu(b_, 0.0, stop, threads_) && centre_job_->run(key, stream, stop);
  }

 private:
  const BufferView& b_;
  int threads_;
  BufferView centre_;  // before centre_job_, which refers to it
  std::unique_ptr<OrthogonalFill> centre_job_;
};

}  // namespace

MatrixLayout matrix_layout(const BufferView& b, std::optional<int> column_axis) {
  const int nd = b.ndim();
  std::vector<int> rdims, cdims;
  if (!column_axis) {
    rdims.push_back(0);
    for (int k = 1; k < nd; ++k) cdims.push_back(k);
  } else {
    const int a = *column_axis;
    if (a < 0 || a >= nd)
      throw std::invalid_argument("fastinit: column_axis " + std::to_string(a) +
                                  " is out of range for a " + std::to_string(nd) + "-D buffer");
    cdims.push_back(a);
    for (int k = 0; k < nd; ++k)
      if (k != a) rdims.push_back(k);
  }
  // The sizes first: an empty matrix needs no offsets (a (2^31, 0) tensor must not allocate
  // 2^31 of them), and a side the 32-bit BLAS cannot address is refused before any allocation.
  MatrixLayout lay;
  lay.rows = lay.cols = 0;
  // An empty buffer's other extents are unchecked (their product may overflow): stop first.
  for (int64_t e : b.shape)
    if (e == 0) return lay;
  lay.rows = 1;
  lay.cols = 1;
  for (int dim : rdims) lay.rows *= b.shape[dim];  // products of extents of a valid buffer
  for (int dim : cdims) lay.cols *= b.shape[dim];
  check_blas_int(std::max(lay.rows, lay.cols), "max(rows, cols)");
  // Offsets in row-major order of the chosen dimensions (the first varies slowest).
  auto offsets = [&](const std::vector<int>& dims) {
    std::vector<int64_t> off{0};
    for (int dim : dims) {
      std::vector<int64_t> next;
      next.reserve(off.size() * static_cast<size_t>(b.shape[dim]));
      for (int64_t o : off)
        for (int64_t k = 0; k < b.shape[dim]; ++k) next.push_back(o + k * b.strides[dim]);
      off.swap(next);
    }
    return off;
  };
  lay.row_offset = offsets(rdims);
  lay.col_offset = offsets(cdims);
  return lay;
}

template <class S>
void householder_from_normals(S* x, int64_t n, int64_t first_row, double* tau, double* d) {
  double acc[16];
  ColumnSquares sq(acc, 1);
  for (int64_t t = 1; t < n; ++t) sq.add_row(first_row + t, x + t, 1);
  x[0] = finish_reflector(x[0], sq.total(0), tau, d);
}
template void householder_from_normals<float>(float*, int64_t, int64_t, double*, double*);
template void householder_from_normals<double>(double*, int64_t, int64_t, double*, double*);

// The job for b's compute type (validation, every allocation).
std::unique_ptr<OrthogonalFill> prepare_orthogonal(const BufferView& b,
                                                   std::optional<int> column_axis,
                                                   const OrthogonalOptions& opt) {
  if (b.dtype == DType::F64) return std::make_unique<OrthogonalJob<double>>(b, column_axis, opt);
  return std::make_unique<OrthogonalJob<float>>(b, column_axis, opt);
}

std::unique_ptr<OrthogonalFill> prepare_delta_orthogonal(const BufferView& b,
                                                         std::optional<int> column_axis,
                                                         const OrthogonalOptions& opt) {
  return std::make_unique<DeltaOrthogonalJob>(b, column_axis, opt);
}

std::string blas_config() { return scipy_openblas_get_config(); }
std::string blas_corename() { return scipy_openblas_get_corename(); }
int blas_num_threads() { return scipy_openblas_get_num_threads(); }
void blas_set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("fastinit: the number of threads must be >= 1");
  std::lock_guard<std::mutex> lock(blas_mutex());
  scipy_openblas_set_num_threads(n);
}
int blas_parallel_mode() { return scipy_openblas_get_parallel(); }

}  // namespace fastinit
