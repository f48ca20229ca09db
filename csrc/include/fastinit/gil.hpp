// Running a long native call without the GIL, interruptibly, and safely at interpreter exit.
//
// Ctrl-C: the kernels take a StopCheck and ask it between slices (outside any parallel
// region); here it re-takes the GIL for a moment and runs the pending signal handlers
// (PyErr_CheckSignals). When one raised (KeyboardInterrupt), the kernel stops at the next
// slice boundary and the exception propagates with the buffer partly written.
//
// Interpreter exit: a daemon thread that asks for the GIL after finalization has begun never
// gets it: CPython ends the thread in place with pthread_exit, which unwinds the C++ stack
// with a "forced unwind" exception. Unwinding through a noexcept frame (every destructor,
// e.g. py::gil_scoped_release's, which re-takes the GIL) calls std::terminate and aborts the
// whole process. So the GIL is re-taken here by plain calls in an ordinary frame, the forced
// unwind passes through untouched, and nothing on the way up may call into Python from a
// destructor (see release_when_alive below).
#pragma once

#include <cxxabi.h>

#include <exception>
#include <stdexcept>
#include <utility>

#include "fastinit/fill.hpp"
#include "fastinit/prelude.hpp"

namespace fastinit {

// Whether the interpreter is shutting down (so that this thread must not ask for the GIL).
inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Runs f(stop) with the GIL released; stop is the StopCheck to hand to the kernels. Raises
// the pending Python exception (KeyboardInterrupt) when a signal handler raised one. Once the
// interpreter has begun to exit (stop_kernels_at_exit, run by an atexit hook of the fastinit
// package) no kernel starts, and a running one ends at its next slice with a RuntimeError,
// before the process is torn down under it.
template <class F>
void run_without_gil(F&& f) {
  kernel_started();  // before the check: the exit hook sees either this count or the refusal
  if (exit_requested()) {
    kernel_finished();
    throw std::runtime_error("fastinit: the interpreter is exiting");
  }
  PyThreadState* ts = PyEval_SaveThread();
  bool raised = false, exiting = false;
  const StopCheck stop = [&]() -> bool {
    if (exit_requested()) return exiting = true;
    PyEval_RestoreThread(ts);  // at interpreter exit: does not return (forced unwind)
    raised = PyErr_CheckSignals() != 0;
    ts = PyEval_SaveThread();
    return raised;
  };
  std::exception_ptr error;
  {
    struct Finished {  // on every way out, the forced unwind at interpreter exit included
      ~Finished() { kernel_finished(); }
    } finished;
    try {
      std::forward<F>(f)(stop);
    } catch (abi::__forced_unwind&) {
      throw;  // the thread is being ended at interpreter exit: the GIL is not ours to take
    } catch (...) {
      error = std::current_exception();
    }
  }
  PyEval_RestoreThread(ts);  // at interpreter exit: does not return (forced unwind)
  if (error) std::rethrow_exception(error);
  if (raised) throw py::error_already_set();
  if (exiting) throw std::runtime_error("fastinit: the interpreter is exiting (buffer partly written)");
}

// A Python reference that lives across run_without_gil (an argument or a result). A
// py::object's destructor would decref without the GIL on the forced unwind of a thread ended
// at interpreter exit; this one leaks the reference with the dying interpreter instead. On
// every other path the GIL is held again when it is destroyed.
class HeldRef {
 public:
  explicit HeldRef(py::object o) : p_(o.release().ptr()) {}
  HeldRef(const HeldRef&) = delete;
  HeldRef& operator=(const HeldRef&) = delete;
  ~HeldRef() {
    if (p_ != nullptr && PyGILState_Check()) Py_DECREF(p_);
  }
  // Hands the reference back as an object (with the GIL held).
  py::object take() { return py::reinterpret_steal<py::object>(std::exchange(p_, nullptr)); }

 private:
  PyObject* p_;
};

}  // namespace fastinit
