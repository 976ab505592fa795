#include "common/checkpointing.h"

#include <cstdio>
#include <filesystem>

#include "tessera/error.h"

namespace tessera::program {

namespace fs = std::filesystem;

namespace {

std::string crc_hex(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08x", crc);
  return buf;
}

}  // namespace

Checkpointer::Checkpointer(Trainer& trainer, Watchdog& watchdog, CheckpointPolicy policy, const FaultInjector& faults,
                           MetricsLog& log, bool lead)
    : trainer_(trainer), watchdog_(watchdog), policy_(std::move(policy)), faults_(faults), log_(log), lead_(lead) {}

bool Checkpointer::due(int64_t steps_done, int64_t total_steps) const {
  if (!enabled() || steps_done <= 0) return false;
  return steps_done == total_steps || (policy_.every > 0 && steps_done % policy_.every == 0);
}

template <typename Complete>
void Checkpointer::completing(Complete complete, bool last_of_run) {
  try {
    report(complete());
  } catch (const Error& e) {
    if (e.code() != ExitCode::bad_data || in_flight_step_ < 0) throw;
    failed(e, last_of_run);
  }
}

void Checkpointer::failed(const Error& error, bool last_of_run) {
  const int64_t step = in_flight_step_;
  in_flight_step_ = -1;
  in_flight_blocked_ms_ = 0;
  const std::string what = error.what();
  // Every rank throws the same error; the ranks whose own write failed know the file and why.
  const bool own = what.find("its own message says why") == std::string::npos;
  const bool stop = policy_.stop_on_error || last_of_run;
  if (own || lead_)
    std::fprintf(stderr, "tessera: the checkpoint of step %lld was not saved: %s\n", static_cast<long long>(step),
                 what.c_str());
  if (lead_) {
    // Every rank has finished writing: the partial checkpoint's files can go, freeing their space.
    std::error_code ec;
    for (fs::directory_iterator it(policy_.root, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().filename().string().rfind(".tmp-step-", 0) == 0) {
        std::error_code rm;
        fs::remove_all(it->path(), rm);
      }
    std::fprintf(stderr, "tessera: %s; the latest committed checkpoint is still %s\n",
                 stop ? "stopping (--on-save-error stop, or the run's last save)"
                      : "training goes on and the next save retries (--on-save-error continue)",
                 last_committed_dir_.empty() ? "none of this run" : last_committed_dir_.c_str());
    std::fflush(stderr);
    log_.write(MetricsRecord("checkpoint_failed").add("step", step).add("error", what).add("action", stop ? "stop" : "continue"));
  }
  if (stop) throw error;
}

void Checkpointer::save(const TrainingState& state) {
  Watchdog::Scope scope = watchdog_.scope("checkpoint save", state.step);
  completing([&] { return trainer_.finish_checkpoint(); });
  CheckpointStats stats = trainer_.save_checkpoint(policy_.root, state, policy_.keep);
  in_flight_blocked_ms_ = stats.blocked_ms;
  in_flight_step_ = state.step;
  last_saved_step_ = state.step;
}

void Checkpointer::poll(int64_t step) {
  if (!enabled()) return;
  Watchdog::Scope scope = watchdog_.scope("checkpoint commit", step);
  completing([&] { return trainer_.poll_checkpoint(); });
}

void Checkpointer::finish(bool last_of_run) {
  if (!enabled()) return;
  Watchdog::Scope scope = watchdog_.scope("checkpoint finish", -1);
  completing([&] { return trainer_.finish_checkpoint(); }, last_of_run);
}

std::optional<TrainingState> Checkpointer::load_latest(const std::function<void(const TrainingState&)>& check_state) {
  if (!enabled()) return std::nullopt;
  finish();
  Watchdog::Scope scope = watchdog_.scope("checkpoint load", -1);
  return trainer_.load_latest_checkpoint(policy_.root, check_state);
}

void Checkpointer::report(const CheckpointStats& done) {
  if (done.step < 0) return;  // nothing was in flight
  const double blocked_ms = in_flight_blocked_ms_;
  in_flight_blocked_ms_ = 0;
  in_flight_step_ = -1;
  last_committed_dir_ = done.dir;
  if (!lead_) return;
  std::printf("checkpoint step %lld: blocked %.1f ms, written in %.1f ms (%.2f MB, commit %.1f ms) -> %s\n",
              static_cast<long long>(done.step), blocked_ms, done.write_ms, double(done.bytes) / 1e6, done.commit_ms,
              done.dir.c_str());
  std::fflush(stdout);
  log_.write(MetricsRecord("checkpoint")
                 .add("step", done.step)
                 .add("blocked_ms", blocked_ms)
                 .add("write_ms", done.write_ms)
                 .add("commit_ms", done.commit_ms)
                 .add("bytes", done.bytes)
                 .add("dir", done.dir)
                 .add("manifest_crc32c", crc_hex(done.manifest_crc32c)));
  // Test faults that damage a committed checkpoint act once it is committed.
  faults_.after_checkpoint(done.step, done.dir);
}

}  // namespace tessera::program
