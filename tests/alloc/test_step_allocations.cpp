// A training step allocates nothing on the heap once the first steps have run: kernels take their
// scratch from the Context (grown once), the model's activations live in its arena, the pipeline
// bookkeeping is planned once. Counted by replacing the global operator new in this test binary
// (its own executable, so the replacement touches no other test); every C++ allocation tessera
// makes goes through it. Counting is on only around the steps.
//
// One process only: a pipeline-parallel layout's point-to-point transfers go through the MPI
// communicator, whose Work handles allocate per exchange (not covered here). The one-process
// trainer with several microbatches still runs the pipeline interpreter, the activation slots and
// gradient accumulation.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "support/test_support.h"
#include "tessera/data.h"
#include "tessera/trainer.h"

namespace {

std::atomic<bool> counting{false};
std::atomic<long> allocations{0};

void* counted(std::size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}

void* counted_aligned(std::size_t size, std::align_val_t align) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) { return counted(size); }
void* operator new[](std::size_t size) { return counted(size); }
void* operator new(std::size_t size, std::align_val_t align) { return counted_aligned(size, align); }
void* operator new[](std::size_t size, std::align_val_t align) { return counted_aligned(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace tessera;

namespace {

struct TokenFile {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("tessera_alloc_" + std::to_string(::getpid()) + ".bin"))
                         .string();
  TokenFile() {
    const std::vector<uint16_t> tokens = test::motif_tokens(4000);
    write_token_shard(path, tokens.data(), int64_t(tokens.size()));
  }
  ~TokenFile() { std::remove(path.c_str()); }
};

// Heap allocations during `steps` training steps read from the loader, after two warm-up steps.
long allocations_per_steps(const ModelConfig& config, int microbatches, Recompute recompute, int steps) {
  TrainerOptions options;
  options.batch_size = 2;
  options.seq_len = 40;  // > 32: the fast attention's blocks and the GEMMs' tiles both cut (C = 64)
  options.seed = 5;
  options.microbatches = microbatches;
  ModelOptions model_options;
  model_options.precision = Precision::f32;
  model_options.recompute = recompute;
  Trainer trainer(test::cpu_context(), config, options, model_options);
  static TokenFile file;
  DataLoader loader(file.path, options.batch_size, options.seq_len, 257);
  for (int step = 0; step < 2; ++step) REQUIRE(trainer.step(loader, 1e-3f).applied);
  allocations = 0;
  counting = true;
  for (int step = 0; step < steps; ++step) trainer.step(loader, 1e-3f);
  counting = false;
  return allocations.load();
}

}  // namespace

TEST_CASE("the counter sees an allocation made while counting", "[alloc]") {
  allocations = 0;
  counting = true;
  auto* probe = new std::vector<float>(16);
  counting = false;
  delete probe;
  CHECK(allocations.load() >= 1);
}

TEST_CASE("a CPU training step of GPT-2 allocates nothing after the first steps", "[alloc]") {
  const ModelConfig gpt2 = ModelConfig::gpt2(2, 4, 64, 257, 64);
  SECTION("one microbatch per step") { CHECK(allocations_per_steps(gpt2, 1, Recompute::none, 3) == 0); }
  SECTION("two microbatches per step (the pipeline interpreter, slots, gradient accumulation)") {
    CHECK(allocations_per_steps(gpt2, 2, Recompute::none, 3) == 0);
  }
  SECTION("full recomputation") { CHECK(allocations_per_steps(gpt2, 2, Recompute::full, 3) == 0); }
}

TEST_CASE("a CPU training step of LLaMA allocates nothing after the first steps", "[alloc]") {
  // Grouped-query heads (4 query heads, 2 key/value heads), RMSNorm, RoPE, SwiGLU.
  const ModelConfig llama = ModelConfig::llama(2, 4, 2, 64, 96, 257, 64);
  SECTION("one microbatch per step") { CHECK(allocations_per_steps(llama, 1, Recompute::none, 3) == 0); }
  SECTION("two microbatches per step") { CHECK(allocations_per_steps(llama, 2, Recompute::none, 3) == 0); }
}
