// Discrete-event simulation of a pipeline schedule with rendezvous transfers.
//
// Every rank runs its actions in order. A computation takes its cost once its inputs are there (they
// must be: the interpreter runs the list in order, so a missing input is a broken schedule, not a wait).
// A batch of transfers is posted at the rank's current time; each transfer completes p2p after both of
// its sides are posted, and the batch when all its transfers have. Since nothing is timed out, the
// times do not depend on the order in which ranks are advanced: each rank is simply run as far as it
// can go, over and over, until all are done or none can move (a deadlock).
#include <algorithm>
#include <map>
#include <utility>

#include "tessera/error.h"
#include "tessera/schedule.h"
#include "tessera/schedule.h"

namespace tessera {

namespace {

using Type = PipelineAction::Type;

std::string rank_name(int r) { return "rank " + std::to_string(r); }

std::string ordinal(size_t k) {
  const size_t n = k + 1;
  const char* suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th"
                       : n % 10 == 1                    ? "st"
                       : n % 10 == 2                    ? "nd"
                       : n % 10 == 3                    ? "rd"
                                                        : "th";
  return std::to_string(n) + suffix;
}

// One posted transfer: which rank, which action, when.
struct Posted {
  int rank = -1;
  size_t action = 0;
  double time = 0;
};

// The FIFO channel of one ordered pair of ranks: the k-th send matches the k-th receive.
struct Channel {
  std::vector<Posted> sends, recvs;
};

class Simulator {
 public:
  Simulator(const PipelineSchedule& s, const SimulationCosts& costs, const SimulationVariation& variation = {})
      : s_(s), costs_(costs), variation_(variation) {
    const size_t n = size_t(s.stages);
    if (s.per_rank.size() != n)
      fail("the schedule has " + std::to_string(s.per_rank.size()) + " rank programs for " +
           std::to_string(s.stages) + " stages");
    ranks_.resize(n);
    const size_t cells = size_t(s.microbatches) * size_t(s.virtual_stages);
    for (Rank& r : ranks_) {
      r.forward_done.assign(cells, 0);
      r.backward_done.assign(cells, 0);
      r.activation_in.assign(cells, 0);
      r.gradient_in.assign(cells, 0);
    }
    result_.start.resize(n);
    result_.finish.resize(n);
    for (size_t r = 0; r < n; ++r) {
      result_.start[r].assign(s.per_rank[r].size(), 0.0);
      result_.finish[r].assign(s.per_rank[r].size(), 0.0);
      for (size_t i = 0; i < s.per_rank[r].size(); ++i) check_fields(int(r), i);
    }
  }

  SimulationResult run() {
    bool moved = true;
    while (moved) {
      moved = false;
      for (int r = 0; r < s_.stages; ++r)
        while (advance(r)) moved = true;
    }
    for (int r = 0; r < s_.stages; ++r)
      if (!finished(r)) deadlock();
    check_complete();

    const size_t n = size_t(s_.stages);
    result_.busy_per_rank.resize(n);
    result_.in_flight_per_rank.resize(n);
    double busy = 0;
    for (size_t r = 0; r < n; ++r) {
      result_.makespan = std::max(result_.makespan, ranks_[r].time);
      result_.busy_per_rank[r] = ranks_[r].busy;
      result_.in_flight_per_rank[r] = ranks_[r].peak_in_flight;
      result_.peak_in_flight = std::max(result_.peak_in_flight, ranks_[r].peak_in_flight);
      busy += ranks_[r].busy;
    }
    result_.bubble_fraction = result_.makespan > 0 ? 1.0 - busy / (double(s_.stages) * result_.makespan) : 0.0;
    return std::move(result_);
  }

 private:
  struct Rank {
    size_t pc = 0;            // next action
    size_t batch_end = 0;     // while in a batch: one past its last action
    bool in_batch = false;
    double time = 0;
    double busy = 0;
    int in_flight = 0, peak_in_flight = 0;
    std::vector<char> forward_done, backward_done, activation_in, gradient_in;  // per (microbatch, chunk)
  };

  const PipelineAction& action(int r, size_t i) const { return s_.per_rank[size_t(r)][i]; }
  size_t cell(const PipelineAction& a) const { return size_t(a.microbatch) * size_t(s_.virtual_stages) + size_t(a.chunk); }
  bool finished(int r) const { return !ranks_[size_t(r)].in_batch && ranks_[size_t(r)].pc == s_.per_rank[size_t(r)].size(); }

  [[noreturn]] void fail(const std::string& what) const {
    throw internal_error("pipeline schedule " + describe(s_) + ": " + what, "schedule simulation");
  }
  [[noreturn]] void fail_at(int r, size_t i, const std::string& what) const {
    fail(rank_name(r) + " action " + std::to_string(i) + " " + describe(action(r, i)) + ": " + what);
  }

  void check_fields(int r, size_t i) const {
    const PipelineAction& a = action(r, i);
    if (a.microbatch < 0 || a.microbatch >= s_.microbatches) fail_at(r, i, "microbatch out of range");
    if (a.chunk < 0 || a.chunk >= s_.virtual_stages) fail_at(r, i, "chunk out of range");
    if (!a.is_communication()) return;
    const int c = model_chunk(s_, r, a.chunk), last = model_chunk_count(s_) - 1;
    int expected_peer = -1;
    switch (a.type) {
      case Type::send_activation:
        if (c == last) fail_at(r, i, "the last model chunk sends no activation (it computes the loss)");
        expected_peer = locate_model_chunk(s_, c + 1).rank;
        break;
      case Type::recv_activation:
        if (c == 0) fail_at(r, i, "model chunk 0 receives no activation (it reads tokens)");
        expected_peer = locate_model_chunk(s_, c - 1).rank;
        break;
      case Type::send_gradient:
        if (c == 0) fail_at(r, i, "model chunk 0 sends no gradient");
        expected_peer = locate_model_chunk(s_, c - 1).rank;
        break;
      case Type::recv_gradient:
        if (c == last) fail_at(r, i, "the last model chunk receives no gradient (it computes the loss)");
        expected_peer = locate_model_chunk(s_, c + 1).rank;
        break;
      default: break;
    }
    if (a.peer != expected_peer)
      fail_at(r, i, "the other side of model chunk " + std::to_string(c) + " is " + rank_name(expected_peer));
    if (a.peer == r) fail_at(r, i, "a rank does not send to itself");
  }

  // Runs one step of rank r; false when it cannot move.
  bool advance(int r) {
    Rank& rk = ranks_[size_t(r)];
    if (rk.in_batch) return try_complete_batch(r);
    const auto& actions = s_.per_rank[size_t(r)];
    if (rk.pc == actions.size()) return false;
    if (actions[rk.pc].is_communication()) {
      post_batch(r);
      return true;
    }
    compute(r, rk.pc);
    ++rk.pc;
    return true;
  }

  void compute(int r, size_t i) {
    Rank& rk = ranks_[size_t(r)];
    const PipelineAction& a = action(r, i);
    const int c = model_chunk(s_, r, a.chunk), last = model_chunk_count(s_) - 1;
    const size_t at = cell(a);
    double cost = 0;
    if (a.type == Type::forward) {
      if (rk.forward_done[at]) fail_at(r, i, "runs twice");
      if (c > 0) {
        const ChunkLocation prev = locate_model_chunk(s_, c - 1);
        if (prev.rank == r) {
          if (!rk.forward_done[at - size_t(a.chunk) + size_t(prev.chunk)])
            fail_at(r, i, "runs before the forward of model chunk " + std::to_string(c - 1));
        } else if (!rk.activation_in[at]) {
          fail_at(r, i, "runs before its activation was received from " + rank_name(prev.rank));
        }
      }
      rk.forward_done[at] = 1;
      rk.peak_in_flight = std::max(rk.peak_in_flight, ++rk.in_flight);
      cost = variation_.forward_per_chunk.empty() ? costs_.forward : variation_.forward_per_chunk.at(size_t(c));
    } else {
      if (rk.backward_done[at]) fail_at(r, i, "runs twice");
      if (!rk.forward_done[at]) fail_at(r, i, "runs before its forward");
      if (c < last) {
        const ChunkLocation next = locate_model_chunk(s_, c + 1);
        if (next.rank == r) {
          if (!rk.backward_done[at - size_t(a.chunk) + size_t(next.chunk)])
            fail_at(r, i, "runs before the backward of model chunk " + std::to_string(c + 1));
        } else if (!rk.gradient_in[at]) {
          fail_at(r, i, "runs before its gradient was received from " + rank_name(next.rank));
        }
      }
      rk.backward_done[at] = 1;
      --rk.in_flight;
      cost = variation_.backward_per_chunk.empty() ? costs_.backward : variation_.backward_per_chunk.at(size_t(c));
    }
    if (!variation_.rank_factor.empty()) cost *= variation_.rank_factor.at(size_t(r));
    result_.start[size_t(r)][i] = rk.time;
    rk.time += cost;
    rk.busy += cost;
    result_.finish[size_t(r)][i] = rk.time;
  }

  Channel& channel(int from, int to) { return channels_[{from, to}]; }

  void post_batch(int r) {
    Rank& rk = ranks_[size_t(r)];
    const auto& actions = s_.per_rank[size_t(r)];
    size_t end = rk.pc;
    while (end < actions.size() && actions[end].is_communication()) ++end;
    for (size_t i = rk.pc; i < end; ++i) {
      const PipelineAction& a = actions[i];
      result_.start[size_t(r)][i] = rk.time;
      if (a.type == Type::send_activation && !rk.forward_done[cell(a)])
        fail_at(r, i, "sends an activation its forward has not computed yet");
      if (a.type == Type::send_gradient && !rk.backward_done[cell(a)])
        fail_at(r, i, "sends a gradient its backward has not computed yet");
      Channel& ch = a.is_send() ? channel(r, a.peer) : channel(a.peer, r);
      auto& mine = a.is_send() ? ch.sends : ch.recvs;
      const auto& theirs = a.is_send() ? ch.recvs : ch.sends;
      const size_t k = mine.size();
      mine.push_back(Posted{r, i, rk.time});
      if (k < theirs.size()) check_match(a.is_send() ? mine[k] : theirs[k], a.is_send() ? theirs[k] : mine[k], k);
    }
    rk.batch_end = end;
    rk.in_batch = true;
  }

  // The k-th send and the k-th receive of one channel must describe the same message.
  void check_match(const Posted& send, const Posted& recv, size_t k) const {
    const PipelineAction& a = action(send.rank, send.action);
    const PipelineAction& b = action(recv.rank, recv.action);
    const bool same_kind = (a.type == Type::send_activation) == (b.type == Type::recv_activation);
    const int target = model_chunk(s_, send.rank, a.chunk) + (a.type == Type::send_activation ? 1 : -1);
    if (same_kind && a.microbatch == b.microbatch && target == model_chunk(s_, recv.rank, b.chunk)) return;
    fail("FIFO mismatch: the " + ordinal(k) + " message from " + rank_name(send.rank) + " to " +
         rank_name(recv.rank) + " is " + rank_name(send.rank) + " action " + std::to_string(send.action) + " " +
         describe(a) + ", but " + rank_name(recv.rank) + " action " + std::to_string(recv.action) + " expects " +
         describe(b));
  }

  // Where the other side of rank r's transfer (action i) was posted, if it was.
  const Posted* counterpart(int r, size_t i) {
    const PipelineAction& a = action(r, i);
    Channel& ch = a.is_send() ? channel(r, a.peer) : channel(a.peer, r);
    const auto& mine = a.is_send() ? ch.sends : ch.recvs;
    const auto& theirs = a.is_send() ? ch.recvs : ch.sends;
    // Find this action's FIFO index (a batch is short; scan from the back).
    for (size_t k = mine.size(); k-- > 0;) {
      if (mine[k].rank == r && mine[k].action == i) return k < theirs.size() ? &theirs[k] : nullptr;
    }
    return nullptr;
  }

  bool try_complete_batch(int r) {
    Rank& rk = ranks_[size_t(r)];
    double done = rk.time;
    for (size_t i = rk.pc; i < rk.batch_end; ++i) {
      const Posted* other = counterpart(r, i);
      if (!other) return false;
      done = std::max(done, std::max(rk.time, other->time) + costs_.p2p);
    }
    for (size_t i = rk.pc; i < rk.batch_end; ++i) {
      const PipelineAction& a = action(r, i);
      result_.finish[size_t(r)][i] = done;
      if (a.is_send()) continue;
      auto& received = a.type == Type::recv_activation ? rk.activation_in : rk.gradient_in;
      if (received[cell(a)]) fail_at(r, i, "receives the same message twice");
      received[cell(a)] = 1;
    }
    rk.time = done;
    rk.pc = rk.batch_end;
    rk.in_batch = false;
    return true;
  }

  [[noreturn]] void deadlock() {
    std::string what = "deadlock:";
    for (int r = 0; r < s_.stages; ++r) {
      const Rank& rk = ranks_[size_t(r)];
      what += " " + rank_name(r);
      if (finished(r)) {
        what += " has finished;";
        continue;
      }
      what += " waits in its batch at action " + std::to_string(rk.pc) + " [";
      for (size_t i = rk.pc; i < rk.batch_end; ++i) {
        if (i > rk.pc) what += ", ";
        what += describe(action(r, i));
        if (!counterpart(r, i)) what += " (unmatched)";
      }
      what += "];";
    }
    what.pop_back();
    fail(what);
  }

  void check_complete() const {
    for (int r = 0; r < s_.stages; ++r) {
      const Rank& rk = ranks_[size_t(r)];
      for (int mb = 0; mb < s_.microbatches; ++mb)
        for (int chunk = 0; chunk < s_.virtual_stages; ++chunk) {
          const size_t at = size_t(mb) * size_t(s_.virtual_stages) + size_t(chunk);
          const std::string which = "microbatch " + std::to_string(mb) + " chunk " + std::to_string(chunk);
          if (!rk.forward_done[at]) fail(rank_name(r) + " never runs the forward of " + which);
          if (!rk.backward_done[at]) fail(rank_name(r) + " never runs the backward of " + which);
        }
    }
  }

  const PipelineSchedule& s_;
  SimulationCosts costs_;
  SimulationVariation variation_;
  std::vector<Rank> ranks_;
  std::map<std::pair<int, int>, Channel> channels_;
  SimulationResult result_;
};

}  // namespace

SimulationResult simulate(const PipelineSchedule& s, const SimulationCosts& costs) {
  if (s.stages < 1 || s.virtual_stages < 1 || s.microbatches < 1)
    throw internal_error("simulate: a pipeline schedule needs stages, chunks and microbatches >= 1", TESSERA_HERE);
  return Simulator(s, costs).run();
}

SimulationResult simulate(const PipelineSchedule& s, const SimulationCosts& costs, const SimulationVariation& variation) {
  if (s.stages < 1 || s.virtual_stages < 1 || s.microbatches < 1)
    throw internal_error("simulate: a pipeline schedule needs stages, chunks and microbatches >= 1", TESSERA_HERE);
  const size_t chunks = size_t(model_chunk_count(s));
  if ((!variation.forward_per_chunk.empty() && variation.forward_per_chunk.size() != chunks) ||
      (!variation.backward_per_chunk.empty() && variation.backward_per_chunk.size() != chunks) ||
      (!variation.rank_factor.empty() && variation.rank_factor.size() != size_t(s.stages)))
    throw internal_error("simulate: per-chunk costs need one entry per model chunk and rank factors one per stage",
                         TESSERA_HERE);
  return Simulator(s, costs, variation).run();
}

}  // namespace tessera
