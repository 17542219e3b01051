// Counts the operators libtorch dispatches, for `ablate_engine::dispatch_count`: how many
// operator calls a sampler step issues, the number a GPU step pays a launch's host overhead for.
// A global RecordFunction observer sees every operator call on every thread. It tallies by name
// the calls that launch work on any device: the calls the engine and plugins make (top-level
// calls), and in the backward pass the calls each autograd node makes (the derivative formulas,
// the same on every device). Calls nested deeper are how a CPU kernel happens to be written (a
// CPU matrix product dispatches copies and fills of its own) and are counted only in the total.
// Registered only while counting: an observer slows every dispatch.

#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>

#include "shim_error.h"
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

std::atomic<uint64_t> g_all{0};
std::atomic<uint64_t> g_nodes{0};
std::mutex g_names_lock;
std::map<std::string, uint64_t> g_names;
std::atomic<bool> g_active{false};
at::CallbackHandle g_handle = 0;

// The name the autograd engine records each backward node's evaluation under.
constexpr const char* kNode = "autograd::engine::evaluate_function";

// Per thread, for each operator call still open: whether it is a backward node's evaluation.
thread_local std::vector<bool> t_open;
// Per thread: how many regions of work that only the CPU does are open (not counted as issued).
thread_local int t_cpu_only = 0;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  g_all.fetch_add(1, std::memory_order_relaxed);
  const char* name = fn.name();
  const bool node = t_open.empty() && std::strncmp(name, kNode, std::strlen(kNode)) == 0;
  const bool issued =
      !node && t_cpu_only == 0 && (t_open.empty() || (t_open.size() == 1 && t_open.back()));
  t_open.push_back(node);
  if (node) {
    g_nodes.fetch_add(1, std::memory_order_relaxed);
  }
  if (node || issued) {
    std::lock_guard<std::mutex> lock(g_names_lock);
    g_names[name] += 1;
  }
  return nullptr;
}

void on_end(const at::RecordFunction&, at::ObserverContext*) {
  if (!t_open.empty()) {  // empty: opened before the observer was registered
    t_open.pop_back();
  }
}


}  // namespace

extern "C" {

// Start counting (from zero). Returns nonzero with a message in `err` if libtorch refuses.
int ablate_ops_start(char* err, size_t len) {
  try {
    g_all = 0;
    g_nodes = 0;
    t_open.clear();
    {
      std::lock_guard<std::mutex> lock(g_names_lock);
      g_names.clear();
    }
    if (!g_active.exchange(true)) {
      g_handle = at::addGlobalCallback(
          at::RecordFunctionCallback(on_start, on_end).scopes({at::RecordScope::FUNCTION}));
    }
    return 0;
  } catch (const std::exception& e) {
    g_active = false;
    ablate_shim::write_error(e.what(), err, len);
    return 1;
  }
}

// Enter (delta = 1) or leave (delta = -1) a region of work the engine does on the CPU only
// (per-step checks a GPU skips): its calls count in the total but not as issued.
void ablate_ops_cpu_only(int delta) { t_cpu_only += delta; }

// Stop counting (the counts stay readable).
void ablate_ops_stop() {
  if (g_active.exchange(false)) {
    at::removeCallback(g_handle);
  }
}

// The counts so far: all operator calls, and backward nodes evaluated.
void ablate_ops_read(uint64_t* all, uint64_t* nodes) {
  *all = g_all.load();
  *nodes = g_nodes.load();
}

// The issued calls (top-level, and backward nodes' own) and the backward nodes, by name, as "name\tcount\n" lines, into `buf` (NUL-terminated, truncated to
// `len`). Returns the length the whole text needs (without the NUL).
size_t ablate_ops_names(char* buf, size_t len) {
  std::string text;
  {
    std::lock_guard<std::mutex> lock(g_names_lock);
    for (const auto& [name, count] : g_names) {
      text += name;
      text += '\t';
      text += std::to_string(count);
      text += '\n';
    }
  }
  if (buf != nullptr && len > 0) {
    const size_t n = text.size() < len - 1 ? text.size() : len - 1;
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
  }
  return text.size();
}

}  // extern "C"
