// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), written
// once for every lane type: scalar uint32_t on the host and the GPU, and SIMD vectors in the
// CPU kernels. The lane type L supplies U32 and mulhilo(); everything else is plain integer
// arithmetic, so every path produces the same words.
#pragma once

#include "fastinit/config.hpp"

FASTINIT_KERNEL_NS_BEGIN

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

// Ten rounds in place: (c0, c1, c2, c3) is the counter on entry and the output block on exit.
template <class L>
FASTINIT_HD void philox4x32_10(typename L::U32& c0, typename L::U32& c1, typename L::U32& c2,
                               typename L::U32& c3, uint32_t k0, uint32_t k1) {
  using U32 = typename L::U32;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    U32 hi0, lo0, hi1, lo1;
    L::mulhilo(kPhiloxM0, c0, hi0, lo0);
    L::mulhilo(kPhiloxM1, c2, hi1, lo1);
    const U32 n0 = hi1 ^ c1 ^ k0;
    const U32 n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;  // the key bump after the last round is unused; cheaper than a branch
    k1 += kPhiloxW1;
  }
}

FASTINIT_KERNEL_NS_END
