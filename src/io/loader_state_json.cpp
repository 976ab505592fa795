#include "io/loader_state_json.h"

#include "tessera/error.h"

namespace tessera::io {

json::Value loader_state_to_json(const LoaderState& s) {
  json::Value v = json::Value::object();
  v["epoch"] = s.epoch;
  v["position"] = s.position;
  v["seed"] = s.seed;
  v["shuffle"] = s.shuffle;
  v["windows"] = s.windows;
  v["seq_len"] = s.seq_len;
  return v;
}

LoaderState loader_state_from_json(const json::Value& v) {
  if (v.find("shard") && !v.find("windows"))
    throw data_error("the checkpoint's data loader state (shard and token offset) comes from a tessera that read "
                         "the data in file order only, which this one cannot place in its sequence order",
                     "train_loader", "resume it with the tessera that saved it, or start afresh with --resume never");
  LoaderState s;
  s.epoch = v.at("epoch").as_int64();
  s.position = v.at("position").as_int64();
  s.seed = v.at("seed").as_int64();
  s.shuffle = v.at("shuffle").as_bool();
  s.windows = v.at("windows").as_int64();
  s.seq_len = v.at("seq_len").as_int64();
  return s;
}

}  // namespace tessera::io
