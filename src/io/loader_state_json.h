// The data loader's state as JSON, for checkpoints (private to the library).
#pragma once

#include "io/json.h"
#include "tessera/data.h"

namespace tessera::io {

json::Value loader_state_to_json(const LoaderState& s);
// Data error for a state written by a tessera whose loader had no sequence order (shard and token
// offset only), or with fields missing or of the wrong type.
LoaderState loader_state_from_json(const json::Value& v);

}  // namespace tessera::io
