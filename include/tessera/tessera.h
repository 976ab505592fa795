// The whole public API of tessera.
#pragma once

#include "tessera/buffer.h"
#include "tessera/communicator.h"
#include "tessera/context.h"
#include "tessera/data.h"
#include "tessera/dtype.h"
#include "tessera/error.h"
#include "tessera/gpt2.h"
#include "tessera/hf.h"
#include "tessera/metrics.h"
#include "tessera/optimizer.h"
#include "tessera/parallel.h"
#include "tessera/param_table.h"
#include "tessera/safetensors.h"
#include "tessera/schedule.h"
#include "tessera/tensor.h"
#include "tessera/tokenizer.h"
