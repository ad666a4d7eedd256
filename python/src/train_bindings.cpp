// Training from Python through the C++ trainer (src/train/trainer.hpp).
#include "bindings.hpp"

namespace bitttt::python {

void bind_train(nb::module_&) {}

}  // namespace bitttt::python
