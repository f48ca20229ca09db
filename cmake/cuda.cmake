# The optional CUDA extension module fastinit._cuda (csrc/cuda/, csrc/bind_cuda.cpp).
#
# FASTINIT_CUDA (cache variable, also read from the environment by pyproject.toml):
#   AUTO  build it when a CUDA compiler is found AND this machine has an NVIDIA driver (the
#         default): a machine without a GPU does not spend minutes compiling device code it
#         cannot run. With nvidia-smi, only the architectures of the GPUs present are built,
#         as far as this nvcc can target them (a GPU older than its oldest architecture is
#         left out; one newer than its newest gets PTX of the newest). Says why not otherwise:
#         AUTO does not fail the build for want of a usable compiler or GPU (with CUDA >= 11).
#   ON    build it (for every default architecture) or fail the configuration
#   OFF   never build it
# nvcc is looked for in CUDACXX / CMAKE_CUDA_COMPILER, then $CUDA_HOME, $CUDA_PATH,
# /usr/local/cuda and /opt/cuda, then PATH, so AUTO finds a standard install that is not on PATH.
#
# FASTINIT_CUDA_ARCHITECTURES: what the fat binary holds (CMake CUDA_ARCHITECTURES syntax).
# Default for CUDA >= 13 (which dropped Maxwell, Pascal and Volta):
#   75-real   Turing (T4, RTX 20xx)
#   80-real   Ampere A100; by binary compatibility also runs 8.6 (A10, RTX 30xx), 8.7, 8.9 (L4, L40, RTX 40xx)
#   90-real   Hopper (H100, H200)
#   100-real  Blackwell data centre (B200, GB200; also runs 10.3)
#   120-real  Blackwell consumer/workstation (RTX 50xx, RTX PRO; also runs 12.1)
#   75-virtual  PTX for compute capability 7.5, JIT-compiled by the driver on anything newer
#               that has no SASS above (e.g. 11.0); --fmad=false is kept in the PTX, so the
#               JIT-compiled code gives the same bits.
# Five SASS targets keep a from-scratch CUDA build to a few minutes on 2 cores; 86 and 89 add
# nothing for these memory-bound kernels. CUDA 12.8-12.9: 70-real is added (Volta); older
# CUDA 12: 70;75;80;90 SASS + compute_90 PTX.

string(TOUPPER "${FASTINIT_CUDA}" _fastinit_cuda_mode)
if(_fastinit_cuda_mode MATCHES "^(ON|1|TRUE|YES|REQUIRED)$")
  set(_fastinit_cuda_mode ON)
elseif(_fastinit_cuda_mode MATCHES "^(OFF|0|FALSE|NO)$")
  set(_fastinit_cuda_mode OFF)
elseif(NOT _fastinit_cuda_mode STREQUAL "AUTO")
  message(FATAL_ERROR "FASTINIT_CUDA must be AUTO, ON or OFF (got '${FASTINIT_CUDA}')")
endif()

if(_fastinit_cuda_mode STREQUAL "OFF")
  message(STATUS "fastinit: CUDA module not built (FASTINIT_CUDA=OFF)")
  return()
endif()

# --- Find nvcc, also where it is not on PATH.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  file(GLOB _fastinit_versioned_cuda LIST_DIRECTORIES true /usr/local/cuda-*)
  list(SORT _fastinit_versioned_cuda COMPARE NATURAL ORDER DESCENDING)
  find_program(FASTINIT_NVCC nvcc
    HINTS ENV CUDA_HOME ENV CUDA_PATH ENV CUDAToolkit_ROOT /usr/local/cuda /opt/cuda
          ${_fastinit_versioned_cuda}
    PATH_SUFFIXES bin
    DOC "nvcc used for the fastinit CUDA module")
  if(FASTINIT_NVCC)
    set(ENV{CUDACXX} "${FASTINIT_NVCC}")  # read by check_language and enable_language
  endif()
endif()

# --- AUTO: only where a driver is installed (libcuda.so.1 outside the toolkit's stubs, or the
#     kernel module's /proc entry); the GPUs' own architectures when nvidia-smi lists them.
if(_fastinit_cuda_mode STREQUAL "AUTO")
  find_library(FASTINIT_LIBCUDA NAMES libcuda.so.1 cuda
    PATHS /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib/wsl/lib
          /usr/local/nvidia/lib64
    NO_CACHE)
  if(FASTINIT_LIBCUDA MATCHES "/stubs/")
    set(FASTINIT_LIBCUDA "")
  endif()
  if(NOT FASTINIT_LIBCUDA AND NOT EXISTS /proc/driver/nvidia/version)
    message(STATUS "fastinit: CUDA module not built (FASTINIT_CUDA=AUTO): this machine has no "
                   "NVIDIA driver (no libcuda.so.1), so no GPU to run it on; "
                   "set FASTINIT_CUDA=ON to build it anyway")
    return()
  endif()
  find_program(FASTINIT_NVIDIA_SMI nvidia-smi NO_CACHE)
  if(FASTINIT_NVIDIA_SMI AND NOT DEFINED CACHE{FASTINIT_CUDA_ARCHITECTURES})
    execute_process(COMMAND "${FASTINIT_NVIDIA_SMI}" --query-gpu=compute_cap --format=csv,noheader
                    OUTPUT_VARIABLE _fastinit_caps RESULT_VARIABLE _fastinit_smi_rc
                    ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_fastinit_smi_rc EQUAL 0 AND _fastinit_caps MATCHES "^[0-9]")
      # "8.6\n9.0" -> 86;90, matched against nvcc's own list once nvcc is known (below).
      string(REPLACE "." "" _fastinit_gpu_caps "${_fastinit_caps}")
      string(REGEX REPLACE "[ \t\r\n]+" ";" _fastinit_gpu_caps "${_fastinit_gpu_caps}")
      list(FILTER _fastinit_gpu_caps INCLUDE REGEX "^[0-9]+$")  # drops "[N/A]" lines
      list(REMOVE_DUPLICATES _fastinit_gpu_caps)
      list(SORT _fastinit_gpu_caps COMPARE NATURAL)
    endif()
  endif()
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  set(_fastinit_cuda_why "no working CUDA compiler (nvcc) was found; set CUDACXX=/path/to/nvcc or CUDA_HOME")
  if(_fastinit_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "fastinit: FASTINIT_CUDA=ON, but ${_fastinit_cuda_why}")
  endif()
  message(STATUS "fastinit: CUDA module not built (FASTINIT_CUDA=AUTO): ${_fastinit_cuda_why}")
  return()
endif()

# --- AUTO with nvidia-smi: the GPUs' architectures that this nvcc can target. CUDA 13 dropped
#     compute capability < 7.5, and a GPU newer than the toolkit has no SASS target: such a
#     GPU runs PTX of nvcc's newest architecture (the driver compiles it); an older one cannot
#     run this nvcc's code at all. nvcc --list-gpu-arch (CUDA >= 11) names what it targets;
#     an older nvcc gets the GPUs' own list as is (and may then fail on a GPU it cannot target).
if(_fastinit_gpu_caps AND NOT DEFINED CACHE{FASTINIT_CUDA_ARCHITECTURES})
  execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-arch
                  OUTPUT_VARIABLE _fastinit_nvcc_archs RESULT_VARIABLE _fastinit_nvcc_rc
                  ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REGEX MATCHALL "compute_[0-9]+" _fastinit_nvcc_archs "${_fastinit_nvcc_archs}")
  list(TRANSFORM _fastinit_nvcc_archs REPLACE "compute_" "")
  set(_fastinit_real "")
  set(_fastinit_virtual "")
  set(_fastinit_too_old "")
  if(_fastinit_nvcc_rc EQUAL 0 AND _fastinit_nvcc_archs)
    list(SORT _fastinit_nvcc_archs COMPARE NATURAL)
    list(GET _fastinit_nvcc_archs 0 _fastinit_oldest)
    foreach(_c IN LISTS _fastinit_gpu_caps)
      # The newest architecture nvcc targets at or below the GPU's: its SASS when it has the
      # GPU's major version (SASS runs on later minor revisions of its major), else its PTX,
      # which the driver compiles (a GPU newer than the toolkit); nothing for a GPU older
      # than all of them.
      set(_below "")
      foreach(_a IN LISTS _fastinit_nvcc_archs)
        if(NOT _a GREATER _c)
          set(_below "${_a}")
        endif()
      endforeach()
      if(NOT _below)
        list(APPEND _fastinit_too_old "${_c}")
        continue()
      endif()
      math(EXPR _c_major "${_c} / 10")
      math(EXPR _below_major "${_below} / 10")
      if(_below_major EQUAL _c_major)
        list(APPEND _fastinit_real "${_below}-real")
      else()
        list(APPEND _fastinit_virtual "${_below}-virtual")
      endif()
    endforeach()
  else()
    list(TRANSFORM _fastinit_gpu_caps APPEND "-real" OUTPUT_VARIABLE _fastinit_real)
  endif()
  if(_fastinit_too_old)
    list(TRANSFORM _fastinit_too_old REPLACE "([0-9])$" ".\\1")  # 61 -> 6.1
    string(REPLACE ";" ", " _fastinit_text "${_fastinit_too_old}")
    string(REGEX REPLACE "([0-9])$" ".\\1" _fastinit_oldest_text "${_fastinit_oldest}")
    message(STATUS "fastinit: FASTINIT_CUDA=AUTO: leaving out the GPUs of compute capability "
                   "${_fastinit_text}: this nvcc targets ${_fastinit_oldest_text} and newer")
  endif()
  if(NOT _fastinit_real AND NOT _fastinit_virtual)
    message(STATUS "fastinit: CUDA module not built (FASTINIT_CUDA=AUTO): no GPU of this machine "
                   "can run code from this nvcc; install a CUDA toolkit that supports them, or "
                   "set FASTINIT_CUDA=ON to build for the default architectures anyway")
    return()
  endif()
  # SASS for each GPU, and PTX for the oldest of them (as for the defaults below).
  if(_fastinit_real)
    list(GET _fastinit_real 0 _fastinit_first)
    string(REPLACE "-real" "-virtual" _fastinit_first "${_fastinit_first}")
    list(APPEND _fastinit_virtual "${_fastinit_first}")
  endif()
  list(REMOVE_DUPLICATES _fastinit_real)
  list(REMOVE_DUPLICATES _fastinit_virtual)
  set(_fastinit_archs ${_fastinit_real} ${_fastinit_virtual})
  set(FASTINIT_CUDA_ARCHITECTURES "${_fastinit_archs}" CACHE STRING
      "CUDA_ARCHITECTURES of fastinit._cuda (see cmake/cuda.cmake)")
  message(STATUS "fastinit: FASTINIT_CUDA=AUTO: building for the GPUs of this machine only")
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "fastinit: building the CUDA module with ${CMAKE_CUDA_COMPILER} (CUDA ${CMAKE_CUDA_COMPILER_VERSION})")

if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 13.0)
  set(_fastinit_cuda_default_archs "75-real;80-real;90-real;100-real;120-real;75-virtual")
elseif(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.8)
  set(_fastinit_cuda_default_archs "70-real;75-real;80-real;90-real;100-real;120-real;70-virtual")
else()
  set(_fastinit_cuda_default_archs "70-real;75-real;80-real;90-real;70-virtual")
endif()
set(FASTINIT_CUDA_ARCHITECTURES "${_fastinit_cuda_default_archs}" CACHE STRING
    "CUDA_ARCHITECTURES of fastinit._cuda (see cmake/cuda.cmake)")
message(STATUS "fastinit: CUDA architectures ${FASTINIT_CUDA_ARCHITECTURES}")

# --- Device code: floating-point contraction off and IEEE division/square root, so that the
#     device rounds every operation exactly as the host (built with -ffp-contract=off) does.
#     Never --use_fast_math.
add_library(fastinit_cuda_kernels OBJECT csrc/cuda/fill_cuda.cu)
set_target_properties(fastinit_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${FASTINIT_CUDA_ARCHITECTURES}"
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_SEPARABLE_COMPILATION OFF
  POSITION_INDEPENDENT_CODE ON
  CUDA_VISIBILITY_PRESET hidden)
target_include_directories(fastinit_cuda_kernels PRIVATE csrc/include csrc)
string(REPLACE ";" " " _fastinit_arch_text "${FASTINIT_CUDA_ARCHITECTURES}")
target_compile_definitions(fastinit_cuda_kernels PRIVATE
  "FASTINIT_CUDA_ARCHITECTURES=\"${_fastinit_arch_text}\"")
string(REPLACE ";" "," _fastinit_host_fp "${FASTINIT_FP_FLAGS}")
target_compile_options(fastinit_cuda_kernels PRIVATE
  --fmad=false -prec-div=true -prec-sqrt=true -ftz=false
  -Xcompiler=${_fastinit_host_fp},-Werror=switch
  # (nvcc warns about every architecture it deprecates, e.g. 7.0 with CUDA 12.8: a choice of
  # FASTINIT_CUDA_ARCHITECTURES, not a defect, so it must not fail a FASTINIT_WERROR build.)
  -Wno-deprecated-gpu-targets
  $<$<BOOL:${FASTINIT_WERROR}>:--Werror=all-warnings>)

# --- The module: bindings, the kernel layout and the device code; buffer checks, parameters
#     and run layout come from the core library, as for _core. cudart is linked statically: no
#     CUDA library is needed to import fastinit, and this module needs only the driver
#     (libcuda.so.1) at run time.
pybind11_add_module(_cuda MODULE
  csrc/bind_cuda.cpp
  csrc/cuda/device_layout.cpp
  $<TARGET_OBJECTS:fastinit_cuda_kernels>)
target_include_directories(_cuda PRIVATE csrc)
# FASTINIT_SANITIZE: the host code only (these sources are all C++; the device objects are not
# instrumented). Under ASan the CUDA driver needs ASAN_OPTIONS=protect_shadow_gap=0.
fastinit_module(_cuda)
target_link_libraries(_cuda PRIVATE CUDA::cudart_static)
install(TARGETS _cuda LIBRARY DESTINATION fastinit)
