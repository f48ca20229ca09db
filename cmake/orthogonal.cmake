# fastinit._blas: orthogonal initialization on scipy-openblas32 (included from CMakeLists.txt).
#
# The BLAS is the scipy-openblas32 wheel (a build requirement and a runtime dependency). Its
# location is asked from the Python that drives the build, and its own CMake package config
# (lib/cmake/openblas) provides the imported target. Every symbol carries a `scipy_` prefix,
# so this copy of OpenBLAS never clashes with another BLAS in the process (NumPy's, torch's MKL).
#
# At run time the module finds libscipy_openblas.so through its RPATH
# ($ORIGIN/../scipy_openblas32/lib, after $ORIGIN for libfastinit_core: both packages in the same site-packages, which covers
# regular and editable installs and virtual environments); fastinit/_orthogonal.py also
# preloads the library from wherever `scipy_openblas32` is importable before importing
# _blas, which covers split layouts (user site + system site, PYTHONPATH, ...).
#
# FASTINIT_ORTHOGONAL=OFF builds fastinit without it (fastinit.orthogonal_ then raises).

set(FASTINIT_ORTHOGONAL "ON" CACHE STRING "Build fastinit._blas (orthogonal_ on scipy-openblas32): ON or OFF")
set_property(CACHE FASTINIT_ORTHOGONAL PROPERTY STRINGS ON OFF)
if(NOT FASTINIT_ORTHOGONAL)
  message(STATUS "fastinit: orthogonal initialization (fastinit._blas) disabled")
  return()
endif()

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
          "import scipy_openblas32 as s; print(s.get_lib_dir()); print(s.get_include_dir()); print(s.__version__)"
  OUTPUT_VARIABLE _fastinit_openblas_out
  ERROR_VARIABLE _fastinit_openblas_err
  RESULT_VARIABLE _fastinit_openblas_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _fastinit_openblas_rc EQUAL 0)
  message(FATAL_ERROR
    "fastinit: orthogonal initialization needs the scipy-openblas32 package in the build "
    "environment (pip install scipy-openblas32), or configure with -DFASTINIT_ORTHOGONAL=OFF.\n"
    "${Python_EXECUTABLE} said: ${_fastinit_openblas_err}")
endif()
string(REPLACE "\n" ";" _fastinit_openblas_out "${_fastinit_openblas_out}")
list(GET _fastinit_openblas_out 0 FASTINIT_OPENBLAS_LIBDIR)
list(GET _fastinit_openblas_out 1 FASTINIT_OPENBLAS_INCLUDEDIR)
list(GET _fastinit_openblas_out 2 FASTINIT_OPENBLAS_PY_VERSION)

find_package(OpenBLAS CONFIG REQUIRED
  PATHS "${FASTINIT_OPENBLAS_LIBDIR}/cmake/openblas"
  NO_DEFAULT_PATH)
message(STATUS "fastinit: scipy-openblas32 ${FASTINIT_OPENBLAS_PY_VERSION} (OpenBLAS ${OpenBLAS_VERSION}) "
               "at ${FASTINIT_OPENBLAS_LIBDIR}")

# The module links the core library (buffers, fills, kernels and the process state).
pybind11_add_module(_blas MODULE
  csrc/bind_orthogonal.cpp
  csrc/orthogonal.cpp)
fastinit_module(_blas)
target_link_libraries(_blas PRIVATE OpenBLAS::OpenBLAS)
# The wheel's libscipy_openblas.so has no versioned soname; the loader resolves it through
# this RPATH, or finds the copy _orthogonal.py preloaded (matched by soname).
set_property(TARGET _blas APPEND PROPERTY INSTALL_RPATH "$ORIGIN/../scipy_openblas32/lib")
set_property(TARGET _blas APPEND PROPERTY BUILD_RPATH "${FASTINIT_OPENBLAS_LIBDIR}")

install(TARGETS _blas LIBRARY DESTINATION fastinit)
