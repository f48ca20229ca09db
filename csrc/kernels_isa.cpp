// Compiled once per instruction set (see CMakeLists.txt): FASTINIT_ISA names the variant and
// the compiler flags select the lane width in kernel_cpu.hpp.
#include "fastinit/kernel_cpu.hpp"
#include "fastinit/kernel_table.hpp"

#define FASTINIT_CAT2(a, b) a##b
#define FASTINIT_CAT(a, b) FASTINIT_CAT2(a, b)
#define FASTINIT_STR2(a) #a
#define FASTINIT_STR(a) FASTINIT_STR2(a)

namespace fastinit {

KernelTable FASTINIT_CAT(kernel_table_, FASTINIT_ISA)() {
  return KernelTable{FASTINIT_STR(FASTINIT_ISA), CpuLanes::W, &fill_range<CpuLanes>};
}

}  // namespace fastinit
