// Shared pieces of the `bitttt._ext` bindings: each bind_* function adds one group of classes to
// the module (module.cpp calls them in dependency order).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>

#include <filesystem>

#include <memory>

#include "bitttt/model.hpp"

namespace bitttt::python {

namespace nb = nanobind;
// Path arguments accept str and os.PathLike (pathlib.Path).
using Path = std::filesystem::path;

// The Python `Model`: a handle on an immutable, shareable C++ Model (sessions hold their own
// reference, so a Session outlives the Python Model object it was made from).
struct PyModel {
    std::shared_ptr<const Model> model;
};

void bind_config(nb::module_& m);
void bind_tokenizer(nb::module_& m);
void bind_model(nb::module_& m);
void bind_session(nb::module_& m);
void bind_train(nb::module_& m);

}  // namespace bitttt::python
