// Pipeline-parallel schedules as data: a generator emits, for every pipeline rank, the ordered list of
// actions it performs in one training step (forward or backward of a microbatch on one of its model
// chunks, and the point-to-point transfers between them). The interpreter executes exactly this list;
// the planner simulates the same list. The parallel layer knows no model: a "model chunk" is just an
// index 0..stages*virtual_stages-1 along the pipeline.
//
// Layout (as Megatron-Core): rank r holds virtual stages (chunks) 0..v-1, and chunk k of rank r runs
// model chunk k*stages + r. Activations flow from model chunk c to c+1, gradients from c+1 to c; from
// the last rank they wrap around to rank 0, chunk+1.
#pragma once

#include <string>
#include <vector>

namespace tessera {

enum class ScheduleKind { gpipe, one_f_one_b, interleaved_1f1b };

// "gpipe", "1f1b", "interleaved" (the --schedule values); anything else is a config error.
ScheduleKind parse_schedule_kind(const std::string& s);
const char* schedule_kind_name(ScheduleKind k);

struct PipelineAction {
  enum class Type { forward, backward, send_activation, recv_activation, send_gradient, recv_gradient };
  Type type;
  int microbatch;  // 0..microbatches-1
  // Virtual stage on this rank, 0..virtual_stages-1 (model chunk = chunk * stages + rank). For a send,
  // the chunk whose output (activation) or input gradient is sent; for a receive, the chunk that will
  // consume what arrives.
  int chunk;
  int peer = -1;  // pipeline rank of the other side, for the four communication types

  bool is_communication() const { return type != Type::forward && type != Type::backward; }
  bool is_send() const { return type == Type::send_activation || type == Type::send_gradient; }
};

const char* action_type_name(PipelineAction::Type t);
// E.g. "forward(mb 3, chunk 1)" or "send_activation(mb 3, chunk 1) to rank 2".
std::string describe(const PipelineAction& a);

struct PipelineSchedule {
  ScheduleKind kind;
  int stages = 1;
  int virtual_stages = 1;
  int microbatches = 1;
  // Ordered actions of each pipeline rank. Consecutive communication actions form one batch, issued as
  // one batched send/recv (like an NCCL group); within a batch activations come before gradients.
  std::vector<std::vector<PipelineAction>> per_rank;
};

// Validates (config_error naming the flag to change): stages (--pp) >= 1, microbatches (--microbatches)
// >= 1, virtual_stages (--virtual-stages) >= 1; gpipe and 1f1b need virtual_stages == 1; interleaved
// needs virtual_stages >= 2 and microbatches % stages == 0 (Megatron's requirement).
//  - gpipe: all forwards, then all backwards in the same microbatch order.
//  - 1f1b: min(stages - rank - 1, microbatches) warm-up forwards, steady one-forward-one-backward,
//    cool-down backwards (Megatron-Core's forward_backward_pipelining_without_interleaving).
//  - interleaved: Megatron-Core's interleaved 1F1B: microbatches in groups of `stages`, warm-up
//    (stages - rank - 1) * 2 + (virtual_stages - 1) * stages forwards (capped at the total), steady
//    1F1B across chunks, cool-down; transfers paired as Megatron pairs them.
PipelineSchedule make_schedule(ScheduleKind kind, int stages, int virtual_stages, int microbatches);

// Forward passes only (evaluation): each microbatch through every model chunk in order, one after
// the other; a rank receives a chunk's input from the rank of the model chunk before it and sends
// its output to the rank of the one after (none when they are the same rank). Kind gpipe.
PipelineSchedule make_forward_schedule(int stages, int virtual_stages, int microbatches);

int model_chunk_count(const PipelineSchedule& s);  // stages * virtual_stages
// Model chunk index (0..stages*virtual_stages-1) that (rank, chunk) runs, and its inverse.
int model_chunk(const PipelineSchedule& s, int rank, int chunk);
struct ChunkLocation {
  int rank;
  int chunk;
};
ChunkLocation locate_model_chunk(const PipelineSchedule& s, int model_chunk);

// Per model chunk and microbatch; p2p per message.
struct SimulationCosts {
  double forward = 1.0, backward = 2.0, p2p = 0.0;
};

struct SimulationResult {
  double makespan = 0;
  double bubble_fraction = 0;  // 1 - (sum of busy time) / (stages * makespan)
  std::vector<double> busy_per_rank;
  // Most (microbatch, chunk) pairs whose forward ran but whose backward did not: activation memory.
  int peak_in_flight = 0;                 // over all ranks
  std::vector<int> in_flight_per_rank;    // peak of each rank
  // Per rank and action (same indices as per_rank): when it started and finished. A communication
  // action starts when its batch is posted and finishes when the whole batch completes.
  std::vector<std::vector<double>> start, finish;
};

// Executes the schedule in a discrete-event simulation with rendezvous semantics: consecutive
// communication actions of a rank form one batch; a transfer completes (p2p after both sides posted)
// only when the peer has posted the matching operation, and a batch completes when all its transfers
// have. Messages between an ordered pair of ranks match in FIFO order and must agree in type,
// microbatch and target chunk. Checks every dependency: forward(m, model chunk c) needs forward(m, c-1)
// done (its activation received when on another rank); backward(m, c) needs forward(m, c) on this rank
// and backward(m, c+1) (its gradient received when on another rank); a send needs the computation that
// produces what it sends; every rank runs each (microbatch, chunk) forward and backward exactly once.
// A violation, a FIFO mismatch or a deadlock throws internal_error naming the ranks and actions.
SimulationResult simulate(const PipelineSchedule& s, const SimulationCosts& costs = {});

// Non-uniform costs (the planner's stragglers and uneven stages): per-model-chunk computation costs
// and per-rank slowdown factors, in the same discrete-event simulation.
struct SimulationVariation {
  // Per model chunk (stages x virtual_stages entries, model chunk order); empty: costs.forward / backward.
  std::vector<double> forward_per_chunk, backward_per_chunk;
  // Per pipeline rank, multiplies that rank's computation (1.05: 5% slower); empty: 1 for every rank.
  std::vector<double> rank_factor;
};
// simulate() with the variation applied (an empty variation gives simulate(s, costs) exactly).
SimulationResult simulate(const PipelineSchedule& s, const SimulationCosts& costs, const SimulationVariation& variation);

// The textbook bubble: (p-1)/(v*m + p-1) (v = 1 for GPipe and 1F1B).
double ideal_bubble_fraction(const PipelineSchedule& s);

// E.g. "1f1b: 4 stages x 1 chunk, 8 microbatches, bubble 27.3%" (the textbook bubble).
std::string describe(const PipelineSchedule& s);

}  // namespace tessera
