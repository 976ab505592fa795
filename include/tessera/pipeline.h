// The pipeline interpreter: executes one pipeline rank's list of actions (a PipelineSchedule) for one
// training step. It knows no model: the hooks run a chunk's forward or backward and name the
// tensors that point-to-point transfers read from or write into.
#pragma once

#include <functional>

#include "tessera/communicator.h"
#include "tessera/schedule.h"
#include "tessera/tensor.h"

namespace tessera {

struct PipelineHooks {
  std::function<void(int mb, int chunk)> forward, backward;
  // What a send reads (the producing chunk's output activation, or its input gradient) and where a
  // receive writes (the consuming chunk's input activation, or its output gradient). A send's chunk
  // is the producer, a receive's the consumer (schedule.h).
  std::function<Tensor(int mb, int chunk)> activation_to_send, activation_to_receive, gradient_to_send,
      gradient_to_receive;
};

// Walks per_rank[pp_rank] in order. Each maximal run of consecutive communication actions is issued
// as one Communicator::exchange batch (in the order the schedule lists them) and completed before
// the next computation. `pp` is the pipeline group: its ranks are the pipeline ranks. Throws
// config_error when the group does not match the schedule's stages.
void run_pipeline(const PipelineSchedule& schedule, int pp_rank, Communicator& pp, const PipelineHooks& hooks);

}  // namespace tessera
