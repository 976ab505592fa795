#include "model/pipeline_slots.h"

#include <fmt/format.h>

#include "tessera/error.h"

namespace tessera::model {

void SlotTable::plan(int microbatches, int chunks, int slots, bool chained) {
  microbatches_ = microbatches;
  chunks_ = chunks;
  slots_ = slots;
  chained_ = chained;
  reset();
}

// Refills the tables in place: after the first step of a plan, a reset allocates nothing.
void SlotTable::reset() {
  free_.resize(size_t(chunks_));
  for (auto& list : free_) {
    list.clear();
    for (int k = slots_ - 1; k >= 0; --k) list.push_back(k);  // slot 0 is taken first
  }
  for (auto* table : {&slot_, &last_}) {
    table->resize(size_t(microbatches_));
    for (auto& row : *table) row.assign(size_t(chunks_), -1);
  }
}

void SlotTable::check(int mb, int chunk, const char* what) const {
  if (microbatches_ == 0)
    throw config_error(fmt::format("model {} before begin_step", what), "call begin_step(microbatches, B, T) first");
  if (mb < 0 || mb >= microbatches_ || chunk < 0 || chunk >= chunks_)
    throw config_error(fmt::format("model {}: microbatch {} / chunk {} outside the plan's {} microbatches x {} chunks",
                                   what, mb, chunk, microbatches_, chunks_));
}

int SlotTable::acquire(int mb, int chunk) {
  int& k = slot_[size_t(mb)][size_t(chunk)];
  if (k >= 0) return k;
  if (chained_ && chunk > 0) {
    k = slot_[size_t(mb)][size_t(chunk) - 1];
    if (k < 0)
      throw config_error(fmt::format("model: forward of microbatch {} on chunk {} before its forward on chunk {}", mb,
                                     chunk, chunk - 1),
                         "run a microbatch's chunks in order");
  } else {
    std::vector<int>& list = free_[size_t(chunk)];
    if (list.empty())
      throw config_error(fmt::format("model: more than {} microbatches in flight on chunk {} (microbatch {} arrives)",
                                     slots_, chunk, mb),
                         "plan more activation slots in begin_step (as many as the schedule keeps in flight)");
    k = list.back();
    list.pop_back();
  }
  last_[size_t(mb)][size_t(chunk)] = k;
  return k;
}

int SlotTable::held(int mb, int chunk, const char* what) const {
  const int k = slot_[size_t(mb)][size_t(chunk)];
  if (k < 0)
    throw config_error(fmt::format("model {}: microbatch {} has no activations on chunk {}", what, mb, chunk),
                       "run (or receive the input of) its forward first");
  return k;
}

int SlotTable::last_held(int mb, int chunk, const char* what) const {
  const int k = last_[size_t(mb)][size_t(chunk)];
  if (k < 0)
    throw config_error(fmt::format("model {}: microbatch {} has no activations on chunk {}", what, mb, chunk),
                       "run (or receive the input of) its forward first");
  return k;
}

void SlotTable::release(int mb, int chunk) {
  int& k = slot_[size_t(mb)][size_t(chunk)];
  if (k < 0) return;
  if (!(chained_ && chunk > 0)) free_[size_t(chunk)].push_back(k);
  k = -1;
}

}  // namespace tessera::model
