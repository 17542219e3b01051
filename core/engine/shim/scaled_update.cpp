// In-place updates with a scalar factor, for `ablate_engine::fused`'s libtorch paths (GPUs):
// y += a·x and y += v·x⊙z are one kernel each in libtorch (`add_` with `alpha`, `addcmul_` with
// `value`), but tch 0.24 exposes neither scalar, so composing them costs two or three kernels.
// Each function catches C++ exceptions and reports them through `err` (NUL-terminated, truncated
// to `len`), returning nonzero.

#include <ATen/ATen.h>

#include <cstring>
#include <exception>

#include "shim_error.h"

extern "C" {

// y ← y + alpha·x in place.
int ablate_add_scaled_(at::Tensor* y, const at::Tensor* x, double alpha, char* err, size_t len) {
  try {
    y->add_(*x, alpha);
    return 0;
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

// y ← y + value·x⊙z in place.
int ablate_addcmul_scaled_(at::Tensor* y, const at::Tensor* x, const at::Tensor* z, double value, char* err,
                           size_t len) {
  try {
    y->addcmul_(*x, *z, value);
    return 0;
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

}  // extern "C"
