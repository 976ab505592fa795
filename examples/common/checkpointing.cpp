#include "common/checkpointing.h"

#include <cstdio>

namespace tessera::program {

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

void Checkpointer::save(const TrainingState& state) {
  Watchdog::Scope scope = watchdog_.scope("checkpoint save", state.step);
  CheckpointStats stats = trainer_.save_checkpoint(policy_.root, state, policy_.keep);
  report(stats);
  in_flight_blocked_ms_ = stats.blocked_ms;
}

void Checkpointer::poll(int64_t step) {
  if (!enabled()) return;
  Watchdog::Scope scope = watchdog_.scope("checkpoint commit", step);
  report(trainer_.poll_checkpoint());
}

void Checkpointer::finish() {
  if (!enabled()) return;
  Watchdog::Scope scope = watchdog_.scope("checkpoint finish", -1);
  report(trainer_.finish_checkpoint());
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
