// A cache of built kernel graphs (cuDNN's attention graphs), one entry per shape, owned by the
// Context that built them (through detail::CudaResources::kernel_state). Building a graph takes far
// longer than running it, so every outcome is kept, failures included:
//   - built: the graph and its workspace size;
//   - unsupported: the library has no engine for this shape here; the caller falls back silently;
//   - error: any other build failure, thrown or returned; the caller falls back too, after one
//     logged line for that shape, rather than throwing (or retrying and logging) on every call.
// Plain C++ (no CUDA), so that its policy is tested on any machine.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

namespace tessera::detail {

template <class Key, class Graph, class Hash = std::hash<Key>>
class GraphCache {
 public:
  enum class Outcome { built, unsupported, error };
  struct Entry {
    Outcome outcome = Outcome::unsupported;
    std::shared_ptr<Graph> graph;  // null unless built
    int64_t workspace_bytes = 0;
    std::string message;  // why the build failed
  };
  using Log = std::function<void(const std::string&)>;

  explicit GraphCache(Log log = [](const std::string& line) { std::fprintf(stderr, "tessera: %s\n", line.c_str()); })
      : log_(std::move(log)) {}

  // The entry for key, built with build() (returning an Entry) on first use. `what` names the
  // graph and shape in the one line logged for a build error.
  template <class Build>
  const Entry& get(const Key& key, const std::string& what, Build&& build) {
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    Entry entry;
    try {
      entry = build();
    } catch (const std::exception& e) {  // a library that throws rather than returning its status
      entry = Entry{};
      entry.outcome = Outcome::error;
      entry.message = e.what();
    }
    ++builds_;
    if (entry.outcome == Outcome::error)
      log_(what + " could not be built (" + entry.message + "); using the plain CUDA kernels for this shape");
    return entries_.emplace(key, std::move(entry)).first->second;
  }

  // How many graphs were built or attempted (each shape once).
  int64_t builds() const { return builds_; }

 private:
  Log log_;
  std::unordered_map<Key, Entry, Hash> entries_;
  int64_t builds_ = 0;
};

}  // namespace tessera::detail
