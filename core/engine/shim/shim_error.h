// The shim's one way of reporting a C++ exception to Rust: its message, NUL-terminated and
// truncated to `len`, into the caller's buffer `err` (which may be null).
#pragma once

#include <cstddef>
#include <cstring>

namespace ablate_shim {

inline void write_error(const char* what, char* err, size_t len) {
  if (err != nullptr && len > 0) {
    std::strncpy(err, what, len - 1);
    err[len - 1] = '\0';
  }
}

}  // namespace ablate_shim
