// Trainer checkpoints under mpirun: a run stopped after 6 of 12 steps, saved, and resumed by a new
// Trainer in the same layout ends bitwise where the uninterrupted run ends; resumed in another
// layout it follows the uninterrupted run within float tolerance. Saving returns before the files
// are written and `latest` moves only at the commit, which a poll makes as soon as every rank's
// write has ended (and not while one is held); a damaged newest checkpoint is passed over
// (the report names the file and rank); keep-K prunes.
// Each case needs one world size (it says so and skips otherwise); CTest launches each size.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "io/checkpoint_layout.h"
#include "io/io_test_util.h"
#include "parallel/small_model.h"
#include "parallel/world.h"
#include "support/test_support.h"
#include "tessera/checkpoint.h"
#include "tessera/communicator.h"
#include "tessera/data.h"
#include "tessera/error.h"
#include "tessera/parallel.h"
#include "tessera/trainer.h"

using namespace tessera;
using test::small_config;
using test::world;
namespace fs = std::filesystem;

namespace {

constexpr int kSteps = 12;
constexpr int kStop = 6;       // the interrupted run saves after this many steps
constexpr int kGlobalB = 2;    // sequences per microbatch over all data-parallel ranks
constexpr int kMicrobatches = 4;
constexpr int kT = test::kSmallModelSeqLen;
constexpr uint64_t kSeed = 4321;

// The test executable's directory: scratch files stay in the build tree.
fs::path scratch_root() {
  return fs::read_symlink("/proc/self/exe").parent_path() / "checkpoint_resume_tmp";
}

// A fresh directory shared by every rank (rank 0 clears it), unique per world size and case.
std::string fresh_dir(const std::string& name) {
  const fs::path dir = scratch_root() / ("w" + std::to_string(world().size()) + "_" + name);
  if (world().rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  world().barrier();
  return dir.string();
}

// Motifs of 8 tokens drawn by a fixed LCG (the stream test_equivalence trains on), one file per rank.
const std::string& token_path() {
  struct File {
    std::string path;
    File() {
      fs::create_directories(scratch_root());
      path = (scratch_root() / ("tokens_" + std::to_string(::getpid()) + ".bin")).string();
      const std::vector<uint16_t> tokens = test::motif_tokens(20000);
      write_token_shard(path, tokens.data(), int64_t(tokens.size()));
    }
    ~File() { std::remove(path.c_str()); }
  };
  static File file;
  return file.path;
}

// tp x pp x dp, or one process without a grid (grid = false).
struct Layout {
  int tp = 1, pp = 1, dp = 1;
  bool grid = true;
  bool sp = false;
  int zero = 0;
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int virtual_stages = 1;
  int batch = 0;            // sequences per microbatch per data-parallel rank; 0: kGlobalB / dp
  bool shuffle = true;      // the data order (file order for comparisons across layouts: see check_resharded_resume)
  size_t bucket_bytes = 0;  // data-parallel gradient buckets; 0: the Trainer's default
  std::string family = "gpt2";

  int ranks() const { return grid ? tp * pp * dp : 1; }
  std::string describe() const {
    if (!grid) return family + " one process";
    return family + " tp=" + std::to_string(tp) + " pp=" + std::to_string(pp) + " dp=" + std::to_string(dp) + (sp ? " sp" : "") +
           (zero ? " zero1" : "") + (virtual_stages > 1 ? " interleaved v=" + std::to_string(virtual_stages) : "") +
           (bucket_bytes ? " buckets of " + std::to_string(bucket_bytes) + " bytes" : "");
  }
};

Layout one_process() {
  Layout l;
  l.grid = false;
  return l;
}

// A Trainer in a layout with its data-parallel loader.
struct Session {
  std::unique_ptr<ProcessGrid> grid;
  std::unique_ptr<Trainer> trainer;
  std::unique_ptr<DataLoader> loader;

  explicit Session(const Layout& l, int layers = 4) {
    ParallelLayout p;
    if (l.grid) {
      p.tp = l.tp;
      p.pp = l.pp;
      p.dp = l.dp;
      p.sequence_parallel = l.sp;
      p.zero_stage = l.zero;
      p.schedule = l.schedule;
      p.virtual_stages = l.virtual_stages;
      p.microbatches = kMicrobatches;
      grid = std::make_unique<ProcessGrid>(world(), p);
    }
    const int dp = l.grid ? l.dp : 1;
    TrainerOptions o;
    o.batch_size = l.batch ? l.batch : kGlobalB / dp;
    o.seq_len = kT;
    if (l.bucket_bytes) o.bucket_bytes = l.bucket_bytes;
    o.microbatches = l.grid ? 0 : kMicrobatches;
    o.seed = kSeed;
    o.adamw.eps = 1e-6f;  // as test_equivalence, so that the resharded runs' parameters compare
    ModelOptions mo;
    mo.precision = Precision::f32;
    mo.grid = grid.get();
    trainer = std::make_unique<Trainer>(test::cpu_context(), small_config(layers, l.family), o, mo);
    LoaderOptions data_order;
    data_order.shuffle = l.shuffle;
    data_order.seed = int64_t(kSeed);
    loader = std::make_unique<DataLoader>(token_path(), o.batch_size, kT, 257, grid ? grid->dp_rank() : 0, dp, data_order);
  }

  std::vector<float> train(int from, int to) {
    std::vector<float> losses;
    for (int s = from; s < to; ++s) losses.push_back(trainer->step(*loader, test::small_model_learning_rate(s, kSteps)).loss);
    return losses;
  }
  TrainingState state(int step) const {
    TrainingState s;
    s.step = step;
    s.train_loader = loader->state();
    s.program_json = "{\"lr_schedule\":\"cosine\",\"rng\":[\"12345678901234567890\"]}";
    return s;
  }
};

struct Run {
  std::vector<float> losses;  // of every step, 0..kSteps-1
  std::map<std::string, std::vector<float>> params;
};

Run straight(const Layout& l) {
  Session s(l);
  Run run;
  run.losses = s.train(0, kSteps);
  run.params = s.trainer->gather_parameters();
  return run;
}

// In file order, like test_equivalence's comparisons across layouts (shuffled batches make Adam
// turn more rounding noise into parameter differences than the bound below allows; the losses
// agree either way, and the loader's tests show a resharded loader reads the same sequences).
Layout in_file_order(Layout l) {
  l.shuffle = false;
  return l;
}

const Run& one_process_reference(const std::string& family) {
  static std::map<std::string, Run> runs;
  auto it = runs.find(family);
  if (it == runs.end()) {
    Layout l = in_file_order(one_process());
    l.family = family;
    it = runs.emplace(family, straight(l)).first;
  }
  return it->second;
}

// The layout in each family.
std::vector<Layout> in_every_family(const Layout& l) {
  std::vector<Layout> out;
  for (const std::string& family : test::small_families()) {
    out.push_back(l);
    out.back().family = family;
  }
  return out;
}

// kStop steps in `first`, a checkpoint, a new Trainer in `second` that loads it and trains on.
Run interrupted(const Layout& first, const Layout& second, const std::string& root) {
  Run run;
  {
    Session s(first);
    run.losses = s.train(0, kStop);
    s.trainer->save_checkpoint(root, s.state(kStop), 0);
    const CheckpointStats done = s.trainer->finish_checkpoint();
    CHECK(done.step == kStop);
    CHECK(done.bytes > 0);
  }
  Session s(second);
  const std::optional<TrainingState> state = s.trainer->load_latest_checkpoint(root);
  REQUIRE(state);
  CHECK(state->step == kStop);
  CHECK(state->skipped_steps == 0);
  CHECK(state->program_json == "{\"lr_schedule\":\"cosine\",\"rng\":[\"12345678901234567890\"]}");
  CHECK(s.trainer->last_checkpoint_load().rejected.empty());
  s.loader->restore(state->train_loader);
  const std::vector<float> rest = s.train(int(state->step), kSteps);
  run.losses.insert(run.losses.end(), rest.begin(), rest.end());
  run.params = s.trainer->gather_parameters();
  return run;
}

bool runs_here(const Layout& a, const Layout& b = one_process()) {
  const int need = std::max(a.ranks(), b.ranks());
  if (world().size() == need) return true;
  WARN("skipped: " << a.describe() << " / " << b.describe() << " needs " << need << " ranks, launched with "
                   << world().size());
  return false;
}

void check_exact_resume(const Layout& l, const std::string& name) {
  INFO(l.describe());
  if (!runs_here(l)) return;
  const Run want = straight(l);
  const Run got = interrupted(l, l, fresh_dir(name));
  REQUIRE(got.losses.size() == want.losses.size());
  CHECK(want.losses.back() < want.losses.front() - 0.2f);  // it learns: the comparison means something
  for (size_t s = 0; s < want.losses.size(); ++s) {
    INFO("step " << s);
    CHECK(std::memcmp(&got.losses[s], &want.losses[s], sizeof(float)) == 0);
  }
  REQUIRE(got.params.size() == want.params.size());
  for (const auto& [param, values] : want.params) {
    INFO(param);
    REQUIRE(got.params.count(param));
    CHECK(test::bitwise_equal(got.params.at(param), values));
  }
}

void check_resharded_resume(const Layout& first, const Layout& second, const std::string& name) {
  INFO(first.describe() << " -> " << second.describe());
  if (!runs_here(first, second)) return;
  REQUIRE(first.family == second.family);
  const Run& want = one_process_reference(first.family);
  const Run got = interrupted(in_file_order(first), in_file_order(second), fresh_dir(name));
  REQUIRE(got.losses.size() == want.losses.size());
  double worst = 0;
  for (size_t s = 0; s < want.losses.size(); ++s)
    worst = std::max(worst, std::fabs(double(got.losses[s]) - want.losses[s]) / std::fabs(double(want.losses[s])));
  INFO("worst relative loss difference " << worst);
  CHECK(worst <= 1e-5);
  double worst_param = 0;
  for (const auto& [param, values] : want.params) {
    REQUIRE(got.params.count(param));
    worst_param = std::max(worst_param, test::max_relative_error(got.params.at(param), values, 1.0));
  }
  INFO("worst parameter difference " << worst_param);
  CHECK(worst_param <= 1e-5);
}

std::string read_latest(const std::string& root) { return io::ckpt::read_latest(root); }

void flip_byte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f);
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  REQUIRE(size > 0);
  f.seekg(size / 2);
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ 0x5a);
  f.seekp(size / 2);
  f.write(&c, 1);
}

// A layout that uses every rank of the world, each rank saving something (tensor-parallel shards).
Layout all_ranks_layout() {
  Layout l;
  if (world().size() == 1) return one_process();
  l.zero = 1;  // under ZeRO-1 every data-parallel rank saves its slices of the optimizer state
  if (world().size() % 2) {
    l.dp = world().size();
    l.batch = 1;
    return l;
  }
  l.tp = 2;
  l.dp = world().size() / 2;
  return l;
}

}  // namespace

TEST_CASE("resume: exact in one process", "[resume]") {
  for (const Layout& l : in_every_family(one_process())) check_exact_resume(l, "exact_one_" + l.family);
}

TEST_CASE("resume: exact under dp2 with ZeRO-1 and under pp2 interleaved", "[resume]") {
  Layout zero;
  zero.dp = 2;
  zero.zero = 1;
  check_exact_resume(zero, "exact_zero1");
  Layout interleaved;
  interleaved.pp = 2;
  interleaved.schedule = ScheduleKind::interleaved_1f1b;
  interleaved.virtual_stages = 2;
  check_exact_resume(interleaved, "exact_interleaved");
}

TEST_CASE("resume: exact under dp3 with ZeRO-1 and small buckets (slices apart from the parameters)", "[resume]") {
  // dp 3 divides no bucket (their sizes are multiples of 64): each rank's slice of every bucket is a
  // copy of the parameters, which loading must refresh.
  Layout l;
  l.dp = 3;
  l.zero = 1;
  l.batch = 1;
  l.bucket_bytes = 16 << 10;
  check_exact_resume(l, "exact_dp3_zero1");
}

TEST_CASE("resume: exact under tp2 pp2", "[resume]") {
  Layout l;
  l.tp = 2;
  l.pp = 2;
  for (const Layout& f : in_every_family(l)) check_exact_resume(f, "exact_tp2pp2_" + f.family);
}

TEST_CASE("resume: resharded between layouts on 2 ranks", "[resume]") {
  Layout tp2, dp2, pp2, tp2sp, dp2zero;
  tp2.tp = 2;
  dp2.dp = 2;
  pp2.pp = 2;
  tp2sp.tp = 2;
  tp2sp.sp = true;
  dp2zero.dp = 2;
  dp2zero.zero = 1;
  for (const std::string& family : test::small_families()) {
    tp2.family = dp2.family = pp2.family = tp2sp.family = dp2zero.family = family;
    check_resharded_resume(tp2, dp2, "tp2_to_dp2_" + family);
    check_resharded_resume(pp2, tp2sp, "pp2_to_tp2sp_" + family);
  }
  dp2zero.family = dp2.family = "gpt2";
  check_resharded_resume(dp2zero, dp2, "zero1_to_zero0");
}

TEST_CASE("resume: resharded from tp2 pp2 to one process and from tp2 dp2 ZeRO-1 to tp2 pp2", "[resume]") {
  Layout tp2pp2, tp2dp2;
  tp2pp2.tp = 2;
  tp2pp2.pp = 2;
  tp2dp2.tp = 2;
  tp2dp2.dp = 2;
  tp2dp2.zero = 1;
  check_resharded_resume(tp2pp2, one_process(), "tp2pp2_to_one");
  check_resharded_resume(tp2dp2, tp2pp2, "tp2dp2zero1_to_tp2pp2");
}

TEST_CASE("resume: saving returns before the files are written; latest moves at the commit", "[resume]") {
  const Layout l = all_ranks_layout();
  INFO(l.describe());
  const std::string root = fresh_dir("async");
  Session s(l);
  s.train(0, 1);
  CheckpointStats stats = s.trainer->save_checkpoint(root, s.state(1), 0);
  CHECK(stats.step == -1);  // nothing was in flight
  stats = s.trainer->finish_checkpoint();
  CHECK(stats.step == 1);
  CHECK(stats.dir == root + "/step-00000001");
  CHECK(read_latest(root) == "step-00000001");
  CHECK(s.trainer->finish_checkpoint().step == -1);

  // Hold this rank's write until the main thread lets it go.
  std::atomic<bool> release{false};
  s.trainer->set_checkpoint_write_hook([&release] {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!release.load() && std::chrono::steady_clock::now() < limit)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  s.train(1, 2);
  stats = s.trainer->save_checkpoint(root, s.state(2), 0);
  const std::string tmp = root + "/.tmp-step-00000002";
  const std::string mine = tmp + "/" + io::ckpt::rank_file_name(world().rank());
  CHECK_FALSE(fs::exists(mine));  // the write has not happened: save_checkpoint did not wait for it
  CHECK(read_latest(root) == "step-00000001");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  release = true;
  s.trainer->set_checkpoint_write_hook({});
  s.train(2, 3);  // training goes on while the write runs
  world().barrier();
  CHECK(read_latest(root) == "step-00000001");  // written or not, without polls nothing commits before the next save
  stats = s.trainer->save_checkpoint(root, s.state(3), 0);
  // This save completed the previous one: its write took the held 100 ms, the snapshot far less.
  CHECK(stats.step == 2);
  CHECK(stats.write_ms >= 100.0);
  CHECK(stats.blocked_ms < stats.write_ms);
  CHECK(stats.dir == root + "/step-00000002");
  CHECK(read_latest(root) == "step-00000002");
  CHECK_FALSE(fs::exists(tmp));
  stats = s.trainer->finish_checkpoint();
  CHECK(stats.step == 3);
  CHECK(read_latest(root) == "step-00000003");
  const std::optional<CheckpointInfo> info = find_latest_valid_checkpoint(root);
  REQUIRE(info);
  CHECK(info->step == 3);
  CHECK(info->world_size == world().size());
}

namespace {

// Polls (collectively) until a save is committed; every rank gets the same answers, so every rank
// polls as often. At most `limit` polls, 1 ms apart.
CheckpointStats poll_until_committed(Trainer& trainer, int limit = 20000) {
  for (int polls = 0; polls < limit; ++polls) {
    const CheckpointStats stats = trainer.poll_checkpoint();
    if (stats.step >= 0) return stats;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return CheckpointStats{};
}

}  // namespace

TEST_CASE("resume: polling commits a save once every rank's write has ended, and not before", "[resume]") {
  const Layout l = all_ranks_layout();
  INFO(l.describe());
  const std::string root = fresh_dir("poll");
  Session s(l);
  CHECK(s.trainer->poll_checkpoint().step == -1);  // nothing in flight
  s.train(0, 1);
  CHECK(s.trainer->save_checkpoint(root, s.state(1), 0).step == -1);
  CheckpointStats stats = poll_until_committed(*s.trainer);
  CHECK(stats.step == 1);  // committed by the poll, with no further save
  CHECK(stats.dir == root + "/step-00000001");
  CHECK(stats.bytes > 0);
  CHECK(read_latest(root) == "step-00000001");
  CHECK_FALSE(fs::exists(root + "/.tmp-step-00000001"));
  CHECK(s.trainer->poll_checkpoint().step == -1);    // nothing left in flight
  CHECK(s.trainer->finish_checkpoint().step == -1);  // nor for finish

  // The last rank's write is held: however often the others poll, nothing commits.
  const int held = world().size() - 1;
  std::atomic<bool> release{false};
  if (world().rank() == held)
    s.trainer->set_checkpoint_write_hook([&release] {
      const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!release.load() && std::chrono::steady_clock::now() < limit)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  s.train(1, 2);
  stats = s.trainer->save_checkpoint(root, s.state(2), 0);
  CHECK(stats.step == -1);  // the poll already completed step 1: nothing for this save to complete
  s.trainer->set_checkpoint_write_hook({});
  const auto held_since = std::chrono::steady_clock::now();
  for (int step = 2; step < 4; ++step) {  // training goes on, polling each step
    s.train(step, step + 1);
    for (int k = 0; k < 20; ++k) {
      CHECK(s.trainer->poll_checkpoint().step == -1);
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
  }
  CHECK(std::chrono::steady_clock::now() - held_since >= std::chrono::milliseconds(100));
  CHECK(read_latest(root) == "step-00000001");
  CHECK_FALSE(fs::exists(root + "/step-00000002"));
  world().barrier();
  release = true;
  stats = poll_until_committed(*s.trainer);
  CHECK(stats.step == 2);
  CHECK(stats.write_ms >= 100.0);  // the slowest rank's write: the held one
  CHECK(stats.dir == root + "/step-00000002");
  CHECK(read_latest(root) == "step-00000002");
  CHECK_FALSE(fs::exists(root + "/.tmp-step-00000002"));
  CHECK(s.trainer->finish_checkpoint().step == -1);
  const std::optional<CheckpointInfo> info = find_latest_valid_checkpoint(root);
  REQUIRE(info);
  CHECK(info->step == 2);
}

// Six steps with checkpoints after steps 3 and 6; returns the parameters after step 3.
std::map<std::string, std::vector<float>> save_steps_3_and_6(const Layout& l, const std::string& root) {
  Session s(l);
  s.train(0, 3);
  s.trainer->save_checkpoint(root, s.state(3), 0);
  std::map<std::string, std::vector<float>> at3 = s.trainer->gather_parameters();
  s.train(3, 6);
  s.trainer->save_checkpoint(root, s.state(6), 0);
  s.trainer->finish_checkpoint();
  return at3;
}

TEST_CASE("resume: a damaged newest checkpoint falls back to the previous one", "[resume]") {
  const Layout l = all_ranks_layout();
  INFO(l.describe());
  const std::string root = fresh_dir("corrupt");
  const std::map<std::string, std::vector<float>> at3 = save_steps_3_and_6(l, root);
  const int victim = world().size() - 1;
  if (world().rank() == 0) flip_byte(checkpoint_rank_file(root + "/step-00000006", victim));
  world().barrier();

  Session s(l);
  std::optional<TrainingState> state = s.trainer->load_latest_checkpoint(root);
  REQUIRE(state);
  CHECK(state->step == 3);
  const CheckpointLoadReport& report = s.trainer->last_checkpoint_load();
  CHECK(report.dir == root + "/step-00000003");
  CHECK(report.step == 3);
  REQUIRE(report.rejected.size() == 1);
  CHECK_THAT(report.rejected[0], Catch::Contains("step-00000006") &&
                                     Catch::Contains(io::ckpt::rank_file_name(victim)) &&
                                     Catch::Contains("rank " + std::to_string(victim)));
  CHECK(s.trainer->gather_parameters() == at3);

  // Every checkpoint damaged: a data error, on every rank; no checkpoint at all: nothing to load.
  if (world().rank() == 0) flip_byte(checkpoint_rank_file(root + "/step-00000003", 0));
  world().barrier();
  try {
    s.trainer->load_latest_checkpoint(root);
    FAIL("a damaged checkpoint was loaded");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("verifies"));
  }
  CHECK_FALSE(s.trainer->load_latest_checkpoint(fresh_dir("empty")).has_value());
}

// Rewrites a committed checkpoint's manifest through `edit` and signs it again (a new commit
// record), as a writer with a bug would leave it: it verifies, and is wrong.
void rewrite_manifest(const std::string& dir, const std::function<void(io::ckpt::Manifest&)>& edit) {
  if (world().rank() == 0) {
    io::ckpt::Manifest m = io::ckpt::read_manifest(dir);
    edit(m);
    const std::string text = io::ckpt::to_json(m).dump() + "\n";
    std::ofstream(dir + "/manifest.json", std::ios::binary | std::ios::trunc) << text;
    std::ofstream(dir + "/commit.json", std::ios::binary | std::ios::trunc) << io::ckpt::commit_record(text);
  }
  world().barrier();
}

TEST_CASE("resume: a newest checkpoint that verifies but cannot be used falls back to the previous one", "[resume]") {
  const Layout l = all_ranks_layout();
  INFO(l.describe());
  const std::string root = fresh_dir("unusable");
  const std::map<std::string, std::vector<float>> at3 = save_steps_3_and_6(l, root);
  const std::string newest = root + "/step-00000006", pristine = root + "/pristine";
  if (world().rank() == 0) fs::copy(newest, pristine);
  world().barrier();

  Session s(l);
  // The program's check of the state: the data position must fit these shards.
  auto loader_fits = [&](const TrainingState& state) { s.loader->restore(state.train_loader); };
  auto falls_back = [&](const std::string& why, const std::function<void(const TrainingState&)>& check) {
    INFO(why);
    std::optional<TrainingState> state = s.trainer->load_latest_checkpoint(root, check);
    REQUIRE(state);
    CHECK(state->step == 3);
    const CheckpointLoadReport& report = s.trainer->last_checkpoint_load();
    CHECK(report.dir == root + "/step-00000003");
    REQUIRE(report.rejected.size() == 1);
    CHECK_THAT(report.rejected[0], Catch::Contains("step-00000006") && Catch::Contains(why));
    CHECK(s.trainer->gather_parameters() == at3);
  };
  // Each case edits the pristine manifest of step 6 and signs it again.
  const std::vector<std::pair<std::string, std::function<void(io::ckpt::Manifest&)>>> cases = {
      {"sequence 1000000000000000",
       [](io::ckpt::Manifest& m) { m.metadata["state"]["train_loader"]["position"] = int64_t(1e15); }},
      {"sequence -64", [](io::ckpt::Manifest& m) { m.metadata["state"]["train_loader"]["position"] = -64; }},
      {"negative", [](io::ckpt::Manifest& m) { m.metadata["state"]["step"] = -6; }},
      {"transformer.wpe.weight",  // a piece missing
       [](io::ckpt::Manifest& m) {
         for (auto& f : m.files)
           f.pieces.erase(std::remove_if(f.pieces.begin(), f.pieces.end(),
                                         [](const io::ckpt::PieceRecord& r) {
                                           return r.piece.name == "param/transformer.wpe.weight";
                                         }),
                          f.pieces.end());
       }},
  };
  for (const auto& [why, edit] : cases) {
    if (world().rank() == 0) {
      fs::remove_all(newest);
      fs::copy(pristine, newest);
    }
    rewrite_manifest(newest, edit);
    falls_back(why, loader_fits);
  }
  // A state that one rank alone refuses: every rank passes over it alike.
  if (world().rank() == 0) {
    fs::remove_all(newest);
    fs::copy(pristine, newest);
  }
  world().barrier();
  const int last = world().size() - 1;
  falls_back("rank " + std::to_string(last), [&](const TrainingState& st) {
    if (world().rank() == last && st.step == 6) throw data_error("refused by the test", "rank " + std::to_string(last));
  });
}

TEST_CASE("resume: a manifest that does not match its commit record falls back to the previous one", "[resume]") {
  const Layout l = all_ranks_layout();
  const std::string root = fresh_dir("manifest");
  save_steps_3_and_6(l, root);
  // One piece's file offset moved by 4 bytes: shifted weights, if the manifest were believed.
  if (world().rank() == 0) {
    const std::string path = root + "/step-00000006/manifest.json";
    std::string text = test::read_bytes(path);
    const size_t at = text.find("\"file_offset\":0");
    REQUIRE(at != std::string::npos);
    text.replace(at, 15, "\"file_offset\":4");
    test::write_bytes(path, text);
  }
  world().barrier();
  Session s(l);
  std::optional<TrainingState> state = s.trainer->load_latest_checkpoint(root);
  REQUIRE(state);
  CHECK(state->step == 3);
  REQUIRE(s.trainer->last_checkpoint_load().rejected.size() == 1);
  CHECK_THAT(s.trainer->last_checkpoint_load().rejected[0],
             Catch::Contains("manifest.json") && Catch::Contains("commit record"));
}

TEST_CASE("resume: keep-K keeps the newest K checkpoints", "[resume]") {
  const Layout l = all_ranks_layout();
  const std::string root = fresh_dir("keep");
  Session s(l);
  for (int step = 1; step <= 4; ++step) {
    s.train(step - 1, step);
    s.trainer->save_checkpoint(root, s.state(step), 2);
  }
  s.trainer->finish_checkpoint();
  world().barrier();
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"latest", "step-00000003", "step-00000004"});
}

TEST_CASE("resume: a checkpoint of another model is refused", "[resume]") {
  const Layout l = all_ranks_layout();
  const std::string root = fresh_dir("other_model");
  {
    Session s(l);
    s.trainer->save_checkpoint(root, s.state(0), 0);  // before any step: the starting state
    s.trainer->finish_checkpoint();
  }
  Session other(l, 2);
  try {
    other.trainer->load_latest_checkpoint(root);
    FAIL("a checkpoint of another model was loaded");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::bad_data);
    CHECK_THAT(e.what(), Catch::Contains("n_layer"));
  }
}
