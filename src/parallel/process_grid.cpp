#include "tessera/parallel.h"

#include <sstream>
#include <string>

#include "tessera/error.h"

namespace tessera {

ParallelLayout ParallelLayout::resolved(int world_size) const {
  ParallelLayout l = *this;
  auto positive = [](int v, const char* flag) {
    if (v < 1) throw config_error(std::string(flag) + " must be at least 1 (got " + std::to_string(v) + ")");
  };
  positive(l.tp, "--tp");
  positive(l.pp, "--pp");
  positive(l.microbatches, "--microbatches");
  positive(l.virtual_stages, "--virtual-stages");
  if (l.dp < 0) throw config_error("--dp must not be negative", "use 0 to derive it from the world size");
  if (world_size % (l.tp * l.pp) != 0)
    throw config_error("the world of " + std::to_string(world_size) + " ranks is not divisible by tp x pp = " +
                           std::to_string(l.tp) + " x " + std::to_string(l.pp),
                       "launch a multiple of tp*pp ranks, or change --tp/--pp");
  if (l.dp == 0) l.dp = world_size / (l.tp * l.pp);
  if (l.tp * l.pp * l.dp != world_size)
    throw config_error("tp x pp x dp = " + std::to_string(l.tp) + " x " + std::to_string(l.pp) + " x " +
                           std::to_string(l.dp) + " = " + std::to_string(l.tp * l.pp * l.dp) +
                           " does not match the world of " + std::to_string(world_size) + " ranks",
                       "set --dp to " + std::to_string(world_size / (l.tp * l.pp)) + " or leave it out");
  if (l.zero_stage != 0 && l.zero_stage != 1)
    throw config_error("--zero " + std::to_string(l.zero_stage) + " is not supported", "use --zero 0 or --zero 1");
  if (l.sequence_parallel && l.tp == 1)
    throw config_error("--sp needs tensor parallelism", "use --tp 2 or more with --sp, or drop --sp");
  if (l.schedule == ScheduleKind::interleaved_1f1b) {
    if (l.virtual_stages < 2)
      throw config_error("the interleaved schedule needs --virtual-stages of 2 or more");
    if (l.microbatches % l.pp != 0)
      throw config_error("the interleaved schedule needs --microbatches divisible by --pp (" +
                         std::to_string(l.microbatches) + " vs " + std::to_string(l.pp) + ")");
  } else if (l.virtual_stages != 1) {
    throw config_error("--virtual-stages needs --schedule interleaved");
  }
  return l;
}

std::string ParallelLayout::describe() const {
  return "tp=" + std::to_string(tp) + " pp=" + std::to_string(pp) + " dp=" + std::to_string(dp) +
         " sp=" + (sequence_parallel ? "on" : "off") + " zero=" + std::to_string(zero_stage) +
         " schedule=" + schedule_kind_name(schedule) + " v=" + std::to_string(virtual_stages) +
         " microbatches=" + std::to_string(microbatches);
}

ParallelLayout parse_layout_spec(const std::string& spec) {
  ParallelLayout l;
  std::stringstream items(spec);
  std::string item;
  while (std::getline(items, item, ',')) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    auto number = [&] {
      try {
        return std::stoi(value);
      } catch (...) {
        throw config_error("layout '" + spec + "': '" + item + "' needs a number");
      }
    };
    if (key == "tp") l.tp = number();
    else if (key == "pp") l.pp = number();
    else if (key == "dp") l.dp = number();
    else if (key == "mb") l.microbatches = number();
    else if (key == "v") l.virtual_stages = number();
    else if (key == "schedule") l.schedule = parse_schedule_kind(value);
    else if (key == "sp") l.sequence_parallel = true;
    else if (key == "zero") l.zero_stage = 1;
    else if (key == "single" || key.empty()) continue;
    else throw config_error("layout '" + spec + "': unknown item '" + item + "'",
                            "use tp=, pp=, dp=, mb=, schedule=, v=, sp, zero");
  }
  return l;
}

ProcessGrid::ProcessGrid(Communicator& world, const ParallelLayout& layout)
    : layout_(layout.resolved(world.size())), world_(&world) {
  const int r = world.rank(), tp = layout_.tp, dp = layout_.dp;
  tp_rank_ = r % tp;
  dp_rank_ = (r / tp) % dp;
  pp_rank_ = r / (tp * dp);
  // Colors identify the group; keys order ranks inside it by their coordinate.
  tp_ = world.split(pp_rank_ * dp + dp_rank_, tp_rank_);
  dp_ = world.split(pp_rank_ * tp + tp_rank_, dp_rank_);
  pp_ = world.split(dp_rank_ * tp + tp_rank_, pp_rank_);
  tp_->set_label("tp");
  dp_->set_label("dp");
  pp_->set_label("pp");
  if (layout_.pp > 1) {
    bool holds_embedding = is_first_stage() || is_last_stage();
    // MPI_Comm_split / ncclCommSplit take a negative color as "no group".
    auto group = world.split(holds_embedding ? dp_rank_ * tp + tp_rank_ : -1, pp_rank_);
    if (holds_embedding) {
      embedding_ = std::move(group);
      embedding_->set_label("embedding");
    }
  }
}

ProcessGrid::~ProcessGrid() = default;

int ProcessGrid::rank_of(int tp_rank, int dp_rank, int pp_rank) const {
  return (pp_rank * layout_.dp + dp_rank) * layout_.tp + tp_rank;
}

}  // namespace tessera
