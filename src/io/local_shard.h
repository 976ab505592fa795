// The local checkpoint tier's file (private): one rank's whole state as one self-checking blob,
// the same bytes in memory (sent to a replica partner) and on disk.
//
//   "TSLOCAL1" | u64 header length | header (JSON) | payload | u32 CRC32C of everything before it
//
// The header says whose shard it is (rank, world size, layout, run), of which step, and the
// training state; the payload is the trainer's state bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::io {

struct LocalShardHeader {
  int rank = -1;
  int world_size = 0;
  int64_t step = -1;
  std::string layout;        // what a restore must match (Trainer::local_state's layout)
  std::string run_id;        // the run that saved it: a restore takes only its own run's shards
  int64_t optimizer_step = 0;
  std::string state_json;    // the TrainingState, as the tier writes it
  uint64_t payload_bytes = 0;
};

std::vector<char> pack_local_shard(const LocalShardHeader& header, const std::vector<char>& payload);
// Verifies the whole blob (magic, sizes, CRC32C) and parses it; data error naming `where` otherwise.
LocalShardHeader unpack_local_shard(const std::vector<char>& blob, const std::string& where,
                                    std::vector<char>* payload = nullptr);
// The header alone, read from the start of a file (no checksum: for inventories); data error when
// it is not a local shard.
LocalShardHeader peek_local_shard(const std::string& path, uint64_t* file_bytes);
void write_local_shard(const std::string& path, const std::vector<char>& blob);  // path.tmp, then rename
std::vector<char> read_local_shard(const std::string& path);

}  // namespace tessera::io
