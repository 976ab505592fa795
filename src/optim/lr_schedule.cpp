// Learning-rate schedule: linear warm-up, cosine decay, constant floor.
#include <cmath>

#include "tessera/optimizer.h"

namespace tessera {

float LRSchedule::at(int step) const {
  if (step < warmup_steps) return max_lr * float(step + 1) / float(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);  // [0, 1)
  const double pi = 3.14159265358979323846;
  const double coeff = 0.5 * (1.0 + std::cos(pi * progress));  // 1 -> 0
  return float(double(min_lr) + coeff * (double(max_lr) - double(min_lr)));
}

}  // namespace tessera
