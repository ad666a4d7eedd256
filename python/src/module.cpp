// The `bitttt._ext` extension: thin nanobind bindings over the C++ API (no logic of its own).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <filesystem>
#include <string>

#include "bindings.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/threads.hpp"

namespace nb = nanobind;

NB_MODULE(_ext, m) {
    m.doc() = "Bit-TTT engine (C++ core)";
    // C++ errors keep their message; the kind picks the Python class: files that cannot be read
    // or written -> OSError, requests this build or machine cannot serve and engine bugs ->
    // RuntimeError, bad values and malformed inputs -> ValueError. std::filesystem errors that
    // escape the engine are file system failures too (OSError).
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const bitttt::Error& e) {
            switch (e.kind()) {
                case bitttt::ErrorKind::kIo:
                    PyErr_SetString(PyExc_OSError, e.what());
                    break;
                case bitttt::ErrorKind::kUnsupported:
                case bitttt::ErrorKind::kInternal:
                    PyErr_SetString(PyExc_RuntimeError, e.what());
                    break;
                default:
                    PyErr_SetString(PyExc_ValueError, e.what());
            }
        } catch (const std::filesystem::filesystem_error& e) {
            PyErr_SetString(PyExc_OSError, e.what());
        }
    });
    m.def(
        "version", [] { return std::string(BITTTT_VERSION); }, "Version of the engine.");
    m.def(
        "cpu_isa", [] { return std::string(bitttt::isa_name(bitttt::active_isa())); },
        "Kernel ISA level in use: 'scalar', 'avx2' or 'avx512'.");
    m.def("num_threads", &bitttt::num_threads, "Threads the kernels use.");
    m.def("set_num_threads", &bitttt::set_num_threads, nb::arg("n"),
          "Sets the kernels' thread count (n <= 0: all cores).");

    bitttt::python::bind_config(m);
    bitttt::python::bind_tokenizer(m);
    bitttt::python::bind_model(m);
    bitttt::python::bind_session(m);
    bitttt::python::bind_train(m);
}
