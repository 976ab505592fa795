#include <fmt/format.h>

#include <vector>

#include "tessera/error.h"
#include "tessera/pipeline.h"

namespace tessera {

void run_pipeline(const PipelineSchedule& schedule, int pp_rank, Communicator& pp, const PipelineHooks& hooks) {
  if (pp.size() != schedule.stages || pp_rank != pp.rank())
    throw config_error(fmt::format("run_pipeline: the pipeline group has {} ranks (this one {}), the schedule {} "
                                   "stages (this one {})",
                                   pp.size(), pp.rank(), schedule.stages, pp_rank),
                       "pass the process grid's pp() group and pp_rank()");
  if (pp_rank < 0 || pp_rank >= int(schedule.per_rank.size()))
    throw config_error(fmt::format("run_pipeline: pipeline rank {} outside the schedule's {} ranks", pp_rank,
                                   schedule.per_rank.size()));
  using Type = PipelineAction::Type;
  const std::vector<PipelineAction>& actions = schedule.per_rank[size_t(pp_rank)];
  std::vector<PeerTransfer> batch;  // one per call, not per batch of transfers
  size_t i = 0;
  while (i < actions.size()) {
    const PipelineAction& a = actions[i];
    if (!a.is_communication()) {
      (a.type == Type::forward ? hooks.forward : hooks.backward)(a.microbatch, a.chunk);
      ++i;
      continue;
    }
    batch.clear();
    for (; i < actions.size() && actions[i].is_communication(); ++i) {
      const PipelineAction& t = actions[i];
      PeerTransfer p;
      p.peer = t.peer;
      switch (t.type) {
        case Type::send_activation:
          p.kind = PeerTransfer::Kind::send;
          p.tensor = hooks.activation_to_send(t.microbatch, t.chunk);
          break;
        case Type::recv_activation:
          p.kind = PeerTransfer::Kind::recv;
          p.tensor = hooks.activation_to_receive(t.microbatch, t.chunk);
          break;
        case Type::send_gradient:
          p.kind = PeerTransfer::Kind::send;
          p.tensor = hooks.gradient_to_send(t.microbatch, t.chunk);
          break;
        default:
          p.kind = PeerTransfer::Kind::recv;
          p.tensor = hooks.gradient_to_receive(t.microbatch, t.chunk);
          break;
      }
      batch.push_back(p);
    }
    pp.exchange(batch).wait();
  }
}

}  // namespace tessera
