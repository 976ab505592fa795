// Pipeline schedule generators (GPipe, 1F1B, interleaved 1F1B) in Megatron-Core's order.
//
// Each rank's program is written the way Megatron-Core writes it: computations, and after each of them
// one batched transfer ("send_forward_recv_backward" and friends). Sends name what they carry; a receive
// only says from whom and whether it is an activation or a gradient, exactly as in Megatron. Then every
// receive is labelled with what its peer sends: the k-th activation (gradient) that rank q sends to rank
// r is the k-th activation (gradient) that r receives from q. simulate() checks that this pairing is
// also consistent in time (dependencies, no deadlock, FIFO across types).
#include "tessera/schedule.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "tessera/error.h"

namespace tessera {

using Type = PipelineAction::Type;

ScheduleKind parse_schedule_kind(const std::string& s) {
  if (s == "gpipe") return ScheduleKind::gpipe;
  if (s == "1f1b") return ScheduleKind::one_f_one_b;
  if (s == "interleaved") return ScheduleKind::interleaved_1f1b;
  throw config_error("unknown pipeline schedule '" + s + "'",
                     "use --schedule gpipe, --schedule 1f1b or --schedule interleaved");
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::gpipe: return "gpipe";
    case ScheduleKind::one_f_one_b: return "1f1b";
    case ScheduleKind::interleaved_1f1b: return "interleaved";
  }
  return "?";
}

const char* action_type_name(Type t) {
  switch (t) {
    case Type::forward: return "forward";
    case Type::backward: return "backward";
    case Type::send_activation: return "send_activation";
    case Type::recv_activation: return "recv_activation";
    case Type::send_gradient: return "send_gradient";
    case Type::recv_gradient: return "recv_gradient";
  }
  return "?";
}

std::string describe(const PipelineAction& a) {
  std::string s = std::string(action_type_name(a.type)) + "(mb " + std::to_string(a.microbatch) + ", chunk " +
                  std::to_string(a.chunk) + ")";
  if (a.is_communication()) s += (a.is_send() ? " to rank " : " from rank ") + std::to_string(a.peer);
  return s;
}

int model_chunk_count(const PipelineSchedule& s) { return s.stages * s.virtual_stages; }

PipelineSchedule make_forward_schedule(int stages, int virtual_stages, int microbatches) {
  if (stages < 1 || virtual_stages < 1 || microbatches < 1)
    throw config_error("forward schedule: stages (--pp), virtual stages and microbatches must be at least 1");
  PipelineSchedule s;
  s.kind = ScheduleKind::gpipe;
  s.stages = stages;
  s.virtual_stages = virtual_stages;
  s.microbatches = microbatches;
  s.per_rank.resize(size_t(stages));
  const int chunks = stages * virtual_stages;
  for (int mb = 0; mb < microbatches; ++mb) {
    for (int mc = 0; mc < chunks; ++mc) {
      const ChunkLocation here = locate_model_chunk(s, mc);
      std::vector<PipelineAction>& actions = s.per_rank[size_t(here.rank)];
      if (mc > 0) {
        const ChunkLocation prev = locate_model_chunk(s, mc - 1);
        if (prev.rank != here.rank) actions.push_back({Type::recv_activation, mb, here.chunk, prev.rank});
      }
      actions.push_back({Type::forward, mb, here.chunk});
      if (mc + 1 < chunks) {
        const ChunkLocation next = locate_model_chunk(s, mc + 1);
        if (next.rank != here.rank) actions.push_back({Type::send_activation, mb, here.chunk, next.rank});
      }
    }
  }
  return s;
}

int model_chunk(const PipelineSchedule& s, int rank, int chunk) { return chunk * s.stages + rank; }

ChunkLocation locate_model_chunk(const PipelineSchedule& s, int model_chunk) {
  return ChunkLocation{model_chunk % s.stages, model_chunk / s.stages};
}

double ideal_bubble_fraction(const PipelineSchedule& s) {
  const double p = s.stages, vm = double(s.virtual_stages) * s.microbatches;
  return (p - 1) / (vm + p - 1);
}

std::string describe(const PipelineSchedule& s) {
  char bubble[32];
  std::snprintf(bubble, sizeof bubble, "%.1f%%", 100.0 * ideal_bubble_fraction(s));
  auto count = [](int n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
  };
  return std::string(schedule_kind_name(s.kind)) + ": " + count(s.stages, "stage", "stages") + " x " +
         count(s.virtual_stages, "chunk", "chunks") + ", " + count(s.microbatches, "microbatch", "microbatches") +
         ", bubble " + bubble;
}

namespace {

void validate(ScheduleKind kind, int stages, int virtual_stages, int microbatches) {
  const std::string name = schedule_kind_name(kind);
  if (stages < 1)
    throw config_error("pipeline stages must be at least 1, got " + std::to_string(stages), "set --pp 1 or more");
  if (microbatches < 1)
    throw config_error("microbatches must be at least 1, got " + std::to_string(microbatches),
                       "set --microbatches 1 or more");
  if (virtual_stages < 1)
    throw config_error("virtual stages must be at least 1, got " + std::to_string(virtual_stages),
                       "set --virtual-stages 1 or more");
  if (kind != ScheduleKind::interleaved_1f1b && virtual_stages != 1)
    throw config_error("--schedule " + name + " runs one chunk per rank, got --virtual-stages " +
                           std::to_string(virtual_stages),
                       "use --virtual-stages 1, or --schedule interleaved for several chunks per rank");
  if (kind == ScheduleKind::interleaved_1f1b) {
    if (virtual_stages < 2)
      throw config_error("--schedule interleaved needs at least 2 chunks per rank, got --virtual-stages " +
                             std::to_string(virtual_stages),
                         "set --virtual-stages 2 or more, or use --schedule 1f1b");
    if (microbatches % stages != 0)
      throw config_error("--schedule interleaved needs --microbatches (" + std::to_string(microbatches) +
                             ") to be a multiple of --pp (" + std::to_string(stages) + ")",
                         "set --microbatches to a multiple of " + std::to_string(stages));
  }
}

// Python's modulo (never negative), which Megatron's look-ahead arithmetic relies on.
int floor_mod(int a, int b) { return ((a % b) + b) % b; }

// Writes one rank's program. Receives are left unlabelled (microbatch -1) until all ranks are written.
class RankProgram {
 public:
  RankProgram(const PipelineSchedule& s, int rank) : s_(s), rank_(rank) {}

  void forward(int mb, int chunk) { actions_.push_back({Type::forward, mb, chunk, -1}); }
  void backward(int mb, int chunk) { actions_.push_back({Type::backward, mb, chunk, -1}); }

  // Transfers; each skips itself at the ends of the pipeline, as Megatron's p2p helpers do.
  void send_forward(int mb, int chunk) {
    if (model_chunk(s_, rank_, chunk) + 1 < model_chunk_count(s_))
      actions_.push_back({Type::send_activation, mb, chunk, next_rank()});
  }
  void send_backward(int mb, int chunk) {
    if (model_chunk(s_, rank_, chunk) > 0) actions_.push_back({Type::send_gradient, mb, chunk, prev_rank()});
  }
  void recv_forward() { actions_.push_back({Type::recv_activation, -1, -1, prev_rank()}); }
  void recv_backward() { actions_.push_back({Type::recv_gradient, -1, -1, next_rank()}); }

  std::vector<PipelineAction> take() { return std::move(actions_); }

 private:
  int next_rank() const { return (rank_ + 1) % s_.stages; }
  int prev_rank() const { return (rank_ + s_.stages - 1) % s_.stages; }

  const PipelineSchedule& s_;
  int rank_;
  std::vector<PipelineAction> actions_;
};

std::vector<PipelineAction> gpipe_rank(const PipelineSchedule& s, int rank) {
  RankProgram p(s, rank);
  const bool first = rank == 0, last = rank == s.stages - 1;
  for (int mb = 0; mb < s.microbatches; ++mb) {
    if (!first) p.recv_forward();
    p.forward(mb, 0);
    p.send_forward(mb, 0);
  }
  for (int mb = 0; mb < s.microbatches; ++mb) {
    if (!last) p.recv_backward();
    p.backward(mb, 0);
    p.send_backward(mb, 0);
  }
  return p.take();
}

// Megatron-Core's forward_backward_pipelining_without_interleaving.
std::vector<PipelineAction> one_f_one_b_rank(const PipelineSchedule& s, int rank) {
  RankProgram p(s, rank);
  const bool first = rank == 0, last = rank == s.stages - 1;
  const int warmup = std::min(s.stages - rank - 1, s.microbatches);
  const int remaining = s.microbatches - warmup;
  int next_forward = 0, next_backward = 0;
  for (int i = 0; i < warmup; ++i) {
    if (!first) p.recv_forward();
    p.forward(next_forward, 0);
    p.send_forward(next_forward++, 0);
  }
  if (remaining > 0 && !first) p.recv_forward();
  for (int i = 0; i < remaining; ++i) {
    p.forward(next_forward, 0);
    p.send_forward(next_forward++, 0);  // send_forward_recv_backward
    if (!last) p.recv_backward();
    p.backward(next_backward, 0);
    p.send_backward(next_backward++, 0);  // send_backward_recv_forward, or send_backward at the end
    if (i + 1 < remaining && !first) p.recv_forward();
  }
  for (int i = 0; i < warmup; ++i) {
    if (!last) p.recv_backward();
    p.backward(next_backward, 0);
    p.send_backward(next_backward++, 0);
  }
  return p.take();
}

// Megatron-Core's forward_backward_pipelining_with_interleaving (microbatch groups of `stages`, without
// the p2p/compute overlap option).
std::vector<PipelineAction> interleaved_rank(const PipelineSchedule& s, int rank) {
  RankProgram p(s, rank);
  const int stages = s.stages, chunks = s.virtual_stages;
  const int total = s.microbatches * chunks;
  const bool first = rank == 0, last = rank == stages - 1;
  // The k-th forward or backward of this rank: which chunk, which microbatch. For negative k (the
  // look-ahead of the first and last ranks) only the chunk is asked for, with Python's modulo.
  auto chunk_of = [&](int k, bool forward) {
    const int c = floor_mod(k, stages * chunks) / stages;
    return forward ? c : chunks - 1 - c;
  };
  auto microbatch_of = [&](int k) { return k / (stages * chunks) * stages + k % stages; };

  const int warmup = std::min((stages - rank - 1) * 2 + (chunks - 1) * stages, total);
  const int remaining = total - warmup;

  if (stages == 1) {  // every chunk lives here: no transfers, just the order
    for (int k = 0; k < warmup; ++k) p.forward(microbatch_of(k), chunk_of(k, true));
    for (int k = 0; k < remaining; ++k) {
      p.forward(microbatch_of(k + warmup), chunk_of(k + warmup, true));
      p.backward(microbatch_of(k), chunk_of(k, false));
    }
    for (int k = remaining; k < total; ++k) p.backward(microbatch_of(k), chunk_of(k, false));
    return p.take();
  }

  if (!first) p.recv_forward();
  for (int k = 0; k < warmup; ++k) {
    const int mb = microbatch_of(k), chunk = chunk_of(k, true);
    p.forward(mb, chunk);
    bool recv_prev = !(first && chunk_of(k + 1, true) == 0);
    if (k == total - 1) recv_prev = false;
    p.send_forward(mb, chunk);  // send_forward_recv_forward
    if (recv_prev) p.recv_forward();
    // The last warm-up step also receives the first gradient (send_forward_backward_recv_forward_backward).
    if (k == warmup - 1 && !last) p.recv_backward();
  }
  for (int k = 0; k < remaining; ++k) {
    const int fk = k + warmup, bk = k;
    const int fmb = microbatch_of(fk), fchunk = chunk_of(fk, true);
    const int bmb = microbatch_of(bk), bchunk = chunk_of(bk, false);
    p.forward(fmb, fchunk);
    p.backward(bmb, bchunk);
    // The first rank is ahead of the last by stages - 1 steps: it receives nothing while the last rank
    // runs its last chunk; symmetrically for gradients.
    bool recv_prev = !(first && chunk_of(fk - (stages - 1), true) == chunks - 1);
    const bool recv_next = !(last && chunk_of(bk - (stages - 1), false) == 0);
    if (k == remaining - 1) recv_prev = false;
    p.send_forward(fmb, fchunk);  // send_forward_backward_recv_forward_backward
    if (recv_prev) p.recv_forward();
    p.send_backward(bmb, bchunk);
    if (recv_next) p.recv_backward();
  }
  for (int k = remaining; k < total; ++k) {
    const int mb = microbatch_of(k), chunk = chunk_of(k, false);
    p.backward(mb, chunk);
    bool recv_next = !(last && chunk_of(k + 1, false) == chunks - 1);
    if (k == total - 1) recv_next = false;
    p.send_backward(mb, chunk);  // send_backward_recv_backward
    if (recv_next) p.recv_backward();
  }
  return p.take();
}

// Within a batch, activations before gradients and sends before receives of the same kind, so that two
// messages between the same pair of ranks (two stages, interleaved) are queued in the same order on
// both sides.
int batch_order(Type t) {
  switch (t) {
    case Type::send_activation: return 0;
    case Type::recv_activation: return 1;
    case Type::send_gradient: return 2;
    case Type::recv_gradient: return 3;
    default: return 4;
  }
}

void order_batches(std::vector<PipelineAction>& actions) {
  size_t i = 0;
  while (i < actions.size()) {
    if (!actions[i].is_communication()) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < actions.size() && actions[j].is_communication()) ++j;
    std::stable_sort(actions.begin() + long(i), actions.begin() + long(j),
                     [](const PipelineAction& a, const PipelineAction& b) {
                       return batch_order(a.type) < batch_order(b.type);
                     });
    i = j;
  }
}

// Gives every receive the microbatch and chunk of the matching send (k-th to k-th per sender,
// receiver and kind).
void label_receives(PipelineSchedule& s) {
  using Key = std::tuple<int, int, bool>;  // (sender, receiver, is activation)
  std::map<Key, std::vector<const PipelineAction*>> sent;
  for (int r = 0; r < s.stages; ++r)
    for (const PipelineAction& a : s.per_rank[size_t(r)])
      if (a.is_send()) sent[Key(r, a.peer, a.type == Type::send_activation)].push_back(&a);

  std::map<Key, size_t> received;
  for (int r = 0; r < s.stages; ++r) {
    for (PipelineAction& a : s.per_rank[size_t(r)]) {
      if (!a.is_communication() || a.is_send()) continue;
      const bool activation = a.type == Type::recv_activation;
      const Key key(a.peer, r, activation);
      const size_t k = received[key]++;
      const auto& sends = sent[key];
      if (k >= sends.size())
        throw internal_error("schedule generator: rank " + std::to_string(r) + " receives " +
                                 std::to_string(k + 1) + " " + (activation ? "activations" : "gradients") +
                                 " from rank " + std::to_string(a.peer) + ", which sends only " +
                                 std::to_string(sends.size()) + " (" + describe(s) + ")",
                             TESSERA_HERE);
      const PipelineAction& send = *sends[k];
      const int target = model_chunk(s, a.peer, send.chunk) + (activation ? 1 : -1);
      a.microbatch = send.microbatch;
      a.chunk = locate_model_chunk(s, target).chunk;
    }
  }
  for (const auto& [key, sends] : sent) {
    if (received[key] != sends.size())
      throw internal_error("schedule generator: rank " + std::to_string(std::get<0>(key)) + " sends " +
                               std::to_string(sends.size()) + " " + (std::get<2>(key) ? "activations" : "gradients") +
                               " to rank " + std::to_string(std::get<1>(key)) + ", which receives " +
                               std::to_string(received[key]) + " (" + describe(s) + ")",
                           TESSERA_HERE);
  }
}

}  // namespace

PipelineSchedule make_schedule(ScheduleKind kind, int stages, int virtual_stages, int microbatches) {
  validate(kind, stages, virtual_stages, microbatches);
  PipelineSchedule s;
  s.kind = kind;
  s.stages = stages;
  s.virtual_stages = virtual_stages;
  s.microbatches = microbatches;
  s.per_rank.resize(size_t(stages));
  for (int r = 0; r < stages; ++r) {
    std::vector<PipelineAction>& actions = s.per_rank[size_t(r)];
    switch (kind) {
      case ScheduleKind::gpipe: actions = gpipe_rank(s, r); break;
      case ScheduleKind::one_f_one_b: actions = one_f_one_b_rank(s, r); break;
      case ScheduleKind::interleaved_1f1b: actions = interleaved_rank(s, r); break;
    }
    order_batches(actions);
  }
  label_receives(s);
  return s;
}

}  // namespace tessera
