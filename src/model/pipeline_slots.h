// The pipeline bookkeeping of one rank's model, whatever the model: which activation slot each
// microbatch holds on each local chunk during one step. A slot is taken when a microbatch's input
// arrives or its forward starts and given back by its backward; the gradient it holds stays
// readable (to be sent) until the slot is taken again. With one pipeline stage a chunk's input is
// the previous chunk's output, so a microbatch keeps one slot index across its chunks ("chained").
// The model owns the activations; this says which slot's activations are whose.
#pragma once

#include <vector>

namespace tessera::model {

class SlotTable {
 public:
  // `slots` per chunk, for `microbatches` microbatches on `chunks` local chunks.
  void plan(int microbatches, int chunks, int slots, bool chained);
  // Every slot free again (the start of a step).
  void reset();

  int microbatches() const { return microbatches_; }
  int chunks() const { return chunks_; }
  int slots() const { return slots_; }
  // config_error when nothing is planned or (mb, chunk) is outside the plan; `what` names the call.
  void check(int mb, int chunk, const char* what) const;

  // The slot (mb, chunk) holds, taking a free one when it holds none (chained: the slot it holds on
  // chunk - 1). config_error when every slot is taken.
  int acquire(int mb, int chunk);
  // The slot (mb, chunk) holds; config_error when none.
  int held(int mb, int chunk, const char* what) const;
  // The slot (mb, chunk) held last (its gradient is sent after its backward gave it back).
  int last_held(int mb, int chunk, const char* what) const;
  void release(int mb, int chunk);

 private:
  int microbatches_ = 0, chunks_ = 0, slots_ = 0;
  bool chained_ = false;
  std::vector<std::vector<int>> free_;  // [chunk]: free slots, the next one at the back
  std::vector<std::vector<int>> slot_;  // [mb][chunk]: held slot, -1 when none
  std::vector<std::vector<int>> last_;  // [mb][chunk]: last held slot
};

}  // namespace tessera::model
