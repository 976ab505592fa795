// The fast-path counts a Context keeps, and the graph cache's policy for cuDNN's attention graphs
// (built, unsupported, other build errors), which need no GPU to check.
#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/graph_cache.h"
#include "kernels/ops.h"
#include "support/test_support.h"

using namespace tessera;

TEST_CASE("fast paths: counts per context, described, fallbacks listed", "[core][fast-paths]") {
  ContextOptions options;
  options.device = DevicePreference::cpu;
  options.announce = false;
  Context a(options), b(options);
  a.fast_paths().matmul_bias_epilogue.ran = 96;
  a.fast_paths().cudnn_attention_backward.ran = 11;
  a.fast_paths().cudnn_attention_backward.fell_back = 1;
  CHECK(b.fast_paths().matmul_bias_epilogue.ran == 0);  // no process-wide counter
  CHECK(a.fast_paths().describe() ==
        "matmul bias epilogue 96 ran, 0 fell back; matmul GELU epilogue 0 ran, 0 fell back; "
        "cuDNN attention forward 0 ran, 0 fell back; cuDNN attention backward 11 ran, 1 fell back");
  CHECK(a.fast_paths().fallbacks() == std::vector<std::string>{"cuDNN attention backward: 1 of 12 calls fell back"});
  CHECK(b.fast_paths().fallbacks().empty());
}

TEST_CASE("fast paths: the CPU kernels count nothing", "[core][fast-paths]") {
  ContextOptions options;
  options.device = DevicePreference::cpu;
  options.announce = false;
  Context ctx(options);
  const int64_t N = 4, C = 8, OC = 16;
  auto inp = test::upload(ctx, test::random_uniform(size_t(N * C), 1), {N, C});
  auto w = test::upload(ctx, test::random_uniform(size_t(OC * C), 2), {OC, C});
  auto bias = test::upload(ctx, test::random_uniform(size_t(OC), 3), {OC});
  auto out = test::poisoned(ctx, {N, OC}), pre = test::poisoned(ctx, {N, OC});
  ops::matmul_forward(ctx, out.tensor, pre.tensor, inp.tensor, w.tensor, bias.tensor, Epilogue::gelu);
  CHECK(ctx.fast_paths().describe().find(" 1 ") == std::string::npos);
}

namespace {

struct FakeGraph {
  int id = 0;
};
using Cache = detail::GraphCache<int, FakeGraph>;

Cache::Entry outcome(Cache::Outcome o, const std::string& message = "") {
  Cache::Entry e;
  e.outcome = o;
  e.message = message;
  if (o == Cache::Outcome::built) {
    e.graph = std::make_shared<FakeGraph>();
    e.graph->id = 7;
    e.workspace_bytes = 1024;
  }
  return e;
}

}  // namespace

TEST_CASE("graph cache: each shape is built once, whatever the outcome", "[core][fast-paths]") {
  std::vector<std::string> log;
  Cache cache([&](const std::string& line) { log.push_back(line); });
  int builds = 0;
  auto get = [&](int key, Cache::Outcome o) {
    return cache.get(key, "graph " + std::to_string(key), [&] {
      ++builds;
      return outcome(o, "CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH");
    });
  };

  SECTION("built: the graph and its workspace are kept") {
    for (int i = 0; i < 3; ++i) {
      const Cache::Entry& e = get(1, Cache::Outcome::built);
      REQUIRE(e.graph);
      CHECK(e.graph->id == 7);
      CHECK(e.workspace_bytes == 1024);
    }
    CHECK(builds == 1);
    CHECK(log.empty());
  }
  SECTION("unsupported: a silent fallback, not asked again") {
    for (int i = 0; i < 3; ++i) CHECK_FALSE(get(2, Cache::Outcome::unsupported).graph);
    CHECK(builds == 1);
    CHECK(log.empty());
  }
  SECTION("any other build error: a fallback with one logged line per shape, never a throw") {
    for (int i = 0; i < 3; ++i) CHECK_FALSE(get(3, Cache::Outcome::error).graph);
    CHECK_FALSE(get(4, Cache::Outcome::error).graph);
    CHECK(builds == 2);
    REQUIRE(log.size() == 2);
    CHECK(log[0] == "graph 3 could not be built (CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH); using the plain CUDA "
                    "kernels for this shape");
  }
  SECTION("a build that throws: the same fallback, one logged line, not built again") {
    for (int i = 0; i < 3; ++i)
      CHECK_FALSE(cache.get(5, "graph 5", [&]() -> Cache::Entry {
                         ++builds;
                         throw std::runtime_error("cudnnException: CUDNN_STATUS_NOT_INITIALIZED");
                       }).graph);
    CHECK(builds == 1);
    REQUIRE(log.size() == 1);
    CHECK(log[0] == "graph 5 could not be built (cudnnException: CUDNN_STATUS_NOT_INITIALIZED); using the plain CUDA "
                    "kernels for this shape");
  }
}
