// The few libtorch settings that tch 0.24 does not expose, for `ablate_engine::compute`:
// autocast to bfloat16 on a given device type, TF32 for CUDA matrix products and convolutions,
// and the channels-last memory format. Compiled by core/engine/build.rs against the headers of
// the libtorch that torch-sys links. Every function catches C++ exceptions and reports them
// through `err` (a NUL-terminated message, truncated to `len`), returning nonzero.

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

#include <cstring>
#include <exception>

#include "shim_error.h"

namespace {


at::DeviceType device_type(int cuda) { return cuda != 0 ? at::kCUDA : at::kCPU; }

}  // namespace

extern "C" {

// Enter a bfloat16 autocast region on the CPU (cuda = 0) or CUDA (cuda = 1). The previous
// state goes to `prev_enabled` / `prev_dtype` (an at::ScalarType code) for ablate_autocast_exit.
int ablate_autocast_enter(int cuda, int* prev_enabled, int* prev_dtype, char* err, size_t len) {
  try {
    const at::DeviceType dev = device_type(cuda);
    *prev_enabled = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(dev));
    at::autocast::set_autocast_dtype(dev, at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

// Leave the region entered last: restore the previous state and, at the outermost exit, drop
// autocast's cache of casted weights (the sampler updates them in place between steps).
int ablate_autocast_exit(int cuda, int prev_enabled, int prev_dtype, char* err, size_t len) {
  try {
    const at::DeviceType dev = device_type(cuda);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, prev_enabled != 0);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(prev_dtype));
    return 0;
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

// Whether autocast is on for the device type (1/0), or -1 on error.
int ablate_autocast_enabled(int cuda) {
  try {
    return at::autocast::is_autocast_enabled(device_type(cuda)) ? 1 : 0;
  } catch (const std::exception&) {
    return -1;
  }
}

// TF32 (on = 1) or IEEE fp32 (on = 0) for CUDA matrix products (cuBLAS) and convolutions
// (cuDNN). libtorch's own default is IEEE for matrix products and TF32 for convolutions.
int ablate_set_cuda_tf32(int on, char* err, size_t len) {
  try {
    const auto p = on != 0 ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
    auto& ctx = at::globalContext();
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, p);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, p);
    return 0;
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

// Whether CUDA matrix products (op = 0) or convolutions (op = 1) may use TF32 (1/0), or -1.
int ablate_cuda_tf32(int op) {
  try {
    const auto o = op == 0 ? at::Float32Op::MATMUL : at::Float32Op::CONV;
    return at::globalContext().float32Precision(at::Float32Backend::CUDA, o) == at::Float32Precision::TF32
               ? 1
               : 0;
  } catch (const std::exception&) {
    return -1;
  }
}

// A copy of a 4-D tensor in the channels-last memory format (same shape, NHWC strides), or
// null with `err` set.
at::Tensor* ablate_channels_last(const at::Tensor* t, char* err, size_t len) {
  try {
    return new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (const std::exception& e) {
    ablate_shim::write_error(e.what(), err, len);
    return nullptr;
  }
}

// Whether a tensor is laid out channels-last (1/0), or -1 on error.
int ablate_is_channels_last(const at::Tensor* t) {
  try {
    return t->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // extern "C"
