#include "tessera/local_checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "io/json.h"
#include "io/loader_state_json.h"
#include "io/local_shard.h"
#include "tessera/error.h"
#include "tessera/host.h"
#include "tessera/host_collectives.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxInventory = 32;  // shards a rank reports (newest first)

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string state_json(const TrainingState& s) {
  json::Value v = json::Value::object();
  v.set("step", s.step);
  v.set("train_loader", io::loader_state_to_json(s.train_loader));
  v.set("skipped_steps", s.skipped_steps);
  v.set("program", json::parse(s.program_json, "TrainingState::program_json"));
  return v.dump();
}

TrainingState state_from_json(const std::string& text, const std::string& where) {
  const json::Value v = json::parse(text, where);
  TrainingState s;
  s.step = v.at("step").as_int64();
  s.train_loader = io::loader_state_from_json(v.at("train_loader"));
  s.skipped_steps = v.at("skipped_steps").as_int64();
  s.program_json = v.at("program").dump();
  return s;
}

int64_t layout_hash(const std::string& layout) { return int64_t(std::hash<std::string>{}(layout) & 0x7fffffffffffffffull); }

std::string step_dir_name(int64_t step) { return fmt::format("step-{:08d}", step); }
std::string shard_file_name(int rank) { return fmt::format("shard-{:05d}.bin", rank); }

bool parse_step_dir(const std::string& name, int64_t* step) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 5) return false;
  try {
    size_t used = 0;
    *step = std::stoll(name.substr(5), &used);
    return used == name.size() - 5;
  } catch (...) {
    return false;
  }
}

// Byte blobs travel as i32 words: sizes round up to whole words.
size_t words_of(uint64_t bytes) { return size_t((bytes + 3) / 4); }

// Sends each (peer, blob) and receives each (peer, size) into `received`, in chunks MPI can count.
void transfer_blobs(Context& ctx, Communicator& world, const std::vector<std::pair<int, const std::vector<char>*>>& sends,
                    const std::vector<std::pair<int, uint64_t>>& receives, std::vector<std::vector<char>>& received) {
  received.assign(receives.size(), {});
  std::vector<std::vector<int32_t>> out(sends.size()), in(receives.size());
  for (size_t i = 0; i < sends.size(); ++i) {
    out[i].assign(words_of(sends[i].second->size()), 0);
    std::memcpy(out[i].data(), sends[i].second->data(), sends[i].second->size());
  }
  for (size_t i = 0; i < receives.size(); ++i) in[i].assign(words_of(receives[i].second), 0);
  constexpr size_t kChunkWords = size_t(1) << 28;  // 1 GiB per message
  for (size_t at = 0;; at += kChunkWords) {
    std::vector<PeerTransfer> transfers;
    for (size_t i = 0; i < sends.size(); ++i)
      if (at < out[i].size())
        transfers.push_back({PeerTransfer::Kind::send,
                             Tensor(out[i].data() + at, {int64_t(std::min(kChunkWords, out[i].size() - at))}, DType::i32, Device::cpu),
                             sends[i].first});
    for (size_t i = 0; i < receives.size(); ++i)
      if (at < in[i].size())
        transfers.push_back({PeerTransfer::Kind::recv,
                             Tensor(in[i].data() + at, {int64_t(std::min(kChunkWords, in[i].size() - at))}, DType::i32, Device::cpu),
                             receives[i].first});
    if (transfers.empty()) break;
    host_exchange(ctx, world, transfers);
  }
  for (size_t i = 0; i < receives.size(); ++i) {
    received[i].resize(size_t(receives[i].second));
    std::memcpy(received[i].data(), in[i].data(), received[i].size());
  }
}

// One shard this host holds.
struct Held {
  int64_t step = -1;
  int rank = -1;
  uint64_t bytes = 0;
  int64_t layout = 0;
  std::string path;
};

// Another run's shards this host holds: the newest step and that run's ID.
struct Foreign {
  int64_t newest_step = -1;
  std::string run_id;
};

std::vector<Held> scan_host_dir(const std::string& host_dir, int world_size, const std::string& run_id, Foreign* foreign) {
  std::vector<Held> held;
  std::error_code ec;
  for (fs::directory_iterator writer(host_dir, ec), end; !ec && writer != end; writer.increment(ec)) {
    std::error_code ec2;
    for (fs::directory_iterator step_dir(writer->path(), ec2), end2; !ec2 && step_dir != end2; step_dir.increment(ec2)) {
      int64_t step = -1;
      if (!parse_step_dir(step_dir->path().filename().string(), &step)) continue;
      std::error_code ec3;
      for (fs::directory_iterator file(step_dir->path(), ec3), end3; !ec3 && file != end3; file.increment(ec3)) {
        const std::string name = file->path().filename().string();
        if (name.rfind("shard-", 0) != 0 || name.size() < 4 || name.substr(name.size() - 4) != ".bin") continue;
        try {
          uint64_t bytes = 0;
          const io::LocalShardHeader h = io::peek_local_shard(file->path().string(), &bytes);
          if (h.step != step || h.world_size != world_size || h.rank < 0 || h.rank >= world_size) continue;
          if (h.run_id != run_id) {
            if (step > foreign->newest_step) *foreign = Foreign{step, h.run_id};
            continue;
          }
          held.push_back(Held{step, h.rank, bytes, layout_hash(h.layout), file->path().string()});
        } catch (const Error&) {
          // Not a shard, or half of one: as if absent.
        }
      }
    }
  }
  std::sort(held.begin(), held.end(), [](const Held& a, const Held& b) { return a.step > b.step; });
  return held;
}

}  // namespace

std::vector<int> replica_partners(const std::vector<std::string>& hosts) {
  std::vector<std::string> nodes;
  std::vector<std::vector<int>> members;
  std::vector<size_t> node_of(hosts.size()), place(hosts.size());
  for (size_t r = 0; r < hosts.size(); ++r) {
    auto it = std::find(nodes.begin(), nodes.end(), hosts[r]);
    if (it == nodes.end()) {
      nodes.push_back(hosts[r]);
      members.emplace_back();
      it = nodes.end() - 1;
    }
    node_of[r] = size_t(it - nodes.begin());
    place[r] = members[node_of[r]].size();
    members[node_of[r]].push_back(int(r));
  }
  std::vector<int> partners(hosts.size(), -1);
  if (nodes.size() < 2) return partners;
  for (size_t r = 0; r < hosts.size(); ++r) {
    const std::vector<int>& next = members[(node_of[r] + 1) % nodes.size()];
    partners[r] = next[place[r] % next.size()];
  }
  return partners;
}

LocalCheckpointTier::LocalCheckpointTier(Context& ctx, Trainer& trainer, Communicator& world, LocalCheckpointOptions options)
    : ctx_(ctx), trainer_(trainer), world_(world), options_(std::move(options)) {
  if (options_.keep < 1) throw config_error("the local checkpoint tier keeps at least one step", "set --local-checkpoint-keep 1 or more");
  hosts_ = host_all_gather_strings(ctx, world, host_identity());
  partners_ = replica_partners(hosts_);
  partner_ = partners_[size_t(world.rank())];
  if (enabled()) {
    std::error_code ec;
    fs::create_directories(host_dir(), ec);
    if (ec)
      throw config_error("cannot create the local checkpoint directory: " + ec.message(),
                         "give --local-checkpoint-dir a writable node-local directory (e.g. /dev/shm/ckpt)", host_dir());
  }
}

LocalCheckpointTier::~LocalCheckpointTier() {
  if (writer_.joinable()) writer_.join();
}

std::string LocalCheckpointTier::host_dir() const { return (fs::path(options_.dir) / host()).string(); }

std::string LocalCheckpointTier::describe() const {
  if (!enabled()) return "off";
  std::string s = fmt::format("every {} steps in {} (keep {}), run {}", options_.every, host_dir(), options_.keep,
                              options_.run_id.empty() ? "(none)" : options_.run_id);
  if (partner_ < 0) return s + ", no replica partner: every rank is on one node, so a lost node loses the tier";
  return s + fmt::format(", replica on rank {} ({})", partner_, hosts_[size_t(partner_)]);
}

void LocalCheckpointTier::finish() {
  if (writer_.joinable()) writer_.join();
}

LocalSaveStats LocalCheckpointTier::save(const TrainingState& state) {
  finish();
  if (!write_error_.empty()) {
    std::fprintf(stderr, "tessera: local checkpoint: the previous write failed: %s\n", write_error_.c_str());
    write_error_.clear();
  }
  LocalSaveStats stats;
  stats.step = state.step;
  stats.partner = partner_;
  const auto t0 = std::chrono::steady_clock::now();
  LocalTrainerState mine = trainer_.local_state();
  io::LocalShardHeader header;
  header.rank = world_.rank();
  header.world_size = world_.size();
  header.step = state.step;
  header.layout = mine.layout;
  header.run_id = options_.run_id;
  header.optimizer_step = mine.optimizer_step;
  header.state_json = state_json(state);
  std::vector<char> blob = io::pack_local_shard(header, mine.bytes);
  stats.copy_ms = ms_since(t0);
  stats.bytes = blob.size();

  std::vector<std::pair<int, std::vector<char>>> shards;
  if (partner_ >= 0) {
    // Sizes first (each rank's state has its own size), then the shards.
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<int> senders;
    for (size_t q = 0; q < partners_.size(); ++q)
      if (partners_[q] == world_.rank()) senders.push_back(int(q));
    std::vector<uint64_t> sizes(senders.size(), 0);
    uint64_t own = blob.size();
    std::vector<PeerTransfer> size_transfers = {
        {PeerTransfer::Kind::send, Tensor(&own, {2}, DType::i32, Device::cpu), partner_}};
    for (size_t i = 0; i < senders.size(); ++i)
      size_transfers.push_back({PeerTransfer::Kind::recv, Tensor(&sizes[i], {2}, DType::i32, Device::cpu), senders[i]});
    host_exchange(ctx_, world_, size_transfers);
    std::vector<std::pair<int, uint64_t>> receives;
    for (size_t i = 0; i < senders.size(); ++i) receives.emplace_back(senders[i], sizes[i]);
    std::vector<std::vector<char>> received;
    transfer_blobs(ctx_, world_, {{partner_, &blob}}, receives, received);
    for (size_t i = 0; i < senders.size(); ++i) {
      stats.replica_bytes += received[i].size();
      shards.emplace_back(senders[i], std::move(received[i]));
    }
    stats.exchange_ms = ms_since(t1);
  }
  shards.emplace_back(world_.rank(), std::move(blob));
  stats.blocked_ms = ms_since(t0);
  write_in_background(state.step, std::move(shards));
  return stats;
}

void LocalCheckpointTier::write_in_background(int64_t step, std::vector<std::pair<int, std::vector<char>>> shards) {
  const fs::path writer_dir = fs::path(host_dir()) / fmt::format("rank-{:05d}", world_.rank());
  const int keep = options_.keep;
  writer_ = std::thread([this, writer_dir, step, keep, shards = std::move(shards)] {
    try {
      const fs::path dir = writer_dir / step_dir_name(step);
      fs::create_directories(dir);
      for (const auto& [rank, blob] : shards) io::write_local_shard((dir / shard_file_name(rank)).string(), blob);
      // The newest `keep` steps stay; older ones (and steps of an abandoned run beyond this one) go.
      std::vector<int64_t> steps;
      for (const auto& entry : fs::directory_iterator(writer_dir)) {
        int64_t s = -1;
        if (parse_step_dir(entry.path().filename().string(), &s)) steps.push_back(s);
      }
      std::sort(steps.rbegin(), steps.rend());
      int kept = 0;
      for (int64_t s : steps) {
        if (s > step || (s <= step && kept++ >= keep)) fs::remove_all(writer_dir / step_dir_name(s));
      }
    } catch (const std::exception& e) {
      write_error_ = e.what();
    }
  });
}

std::optional<LocalRestore> LocalCheckpointTier::restore(int64_t durable_step, std::string* why_not) {
  why_not->clear();
  if (options_.dir.empty()) return std::nullopt;
  finish();
  const int world = world_.size(), me = world_.rank();
  Foreign foreign;
  const std::vector<Held> held = scan_host_dir(host_dir(), world, options_.run_id, &foreign);
  std::vector<int64_t> foreign_steps(static_cast<size_t>(world), -1);
  host_all_gather(ctx_, world_, &foreign.newest_step, sizeof(int64_t), foreign_steps.data());
  const int64_t foreign_newest = *std::max_element(foreign_steps.begin(), foreign_steps.end());

  // Every rank's inventory (newest first), and what each rank's shard must have been saved as.
  std::vector<int64_t> mine(size_t(1 + 4 * kMaxInventory), 0);
  mine[0] = std::min<int64_t>(int64_t(held.size()), kMaxInventory);
  for (int64_t i = 0; i < mine[0]; ++i) {
    const Held& h = held[size_t(i)];
    mine[size_t(1 + 4 * i)] = h.step;
    mine[size_t(2 + 4 * i)] = h.rank;
    mine[size_t(3 + 4 * i)] = int64_t(h.bytes);
    mine[size_t(4 + 4 * i)] = h.layout;
  }
  std::vector<int64_t> all(mine.size() * size_t(world));
  host_all_gather(ctx_, world_, mine.data(), mine.size() * sizeof(int64_t), all.data());
  const int64_t expected_mine = layout_hash(trainer_.local_state_layout());
  std::vector<int64_t> expected(static_cast<size_t>(world), 0);
  host_all_gather(ctx_, world_, &expected_mine, sizeof(expected_mine), expected.data());

  // holders[step][rank] = (holder rank, blob bytes), the owner itself preferred.
  std::map<int64_t, std::map<int, std::pair<int, uint64_t>>> holders;
  bool other_layout = false;
  for (int q = 0; q < world; ++q) {
    const int64_t* inv = all.data() + size_t(q) * mine.size();
    for (int64_t i = 0; i < inv[0]; ++i) {
      const int64_t step = inv[1 + 4 * i];
      const int rank = int(inv[2 + 4 * i]);
      if (inv[4 + 4 * i] != expected[size_t(rank)]) {
        other_layout = true;
        continue;
      }
      auto [it, added] = holders[step].try_emplace(rank, q, uint64_t(inv[3 + 4 * i]));
      if (!added && q == rank) it->second = {q, uint64_t(inv[3 + 4 * i])};
    }
  }
  if (holders.empty()) {
    if (foreign_newest >= 0) {
      const std::string seen = foreign.run_id.empty() ? "" : fmt::format(" (this node: run {})", foreign.run_id);
      *why_not = fmt::format(
          "the local tier holds only another run's shards, up to step {}{}; this run is {}. A restarted job keeps its "
          "run ID under tessera-launch; to resume a run by hand, set TESSERA_RUN_ID to its ID",
          foreign_newest, seen, options_.run_id);
    } else if (other_layout) {
      *why_not = "the local tier holds only shards saved under another model, layout or world size";
    }
    return std::nullopt;
  }
  int64_t chosen = -1;
  std::string newest_gap;
  for (auto it = holders.rbegin(); it != holders.rend(); ++it) {
    std::vector<int> missing;
    for (int r = 0; r < world; ++r)
      if (!it->second.count(r)) missing.push_back(r);
    if (missing.empty()) {
      chosen = it->first;
      break;
    }
    if (newest_gap.empty())
      newest_gap = fmt::format("its step {} has no copy of the shards of ranks {}", it->first, fmt::join(missing, ", "));
  }
  if (chosen < 0) {
    *why_not = "the local tier has no complete step: " + newest_gap;
    return std::nullopt;
  }
  if (chosen < durable_step) {
    *why_not = fmt::format("the local tier's newest complete step {} is older than the durable checkpoint's {}", chosen,
                           durable_step);
    return std::nullopt;
  }

  // Each shard goes from its holder to its owner.
  const auto& plan = holders.at(chosen);
  std::vector<std::vector<char>> owned_blobs;  // blobs this rank reads to send
  std::vector<std::pair<int, const std::vector<char>*>> sends;
  std::vector<std::pair<int, uint64_t>> receives;
  std::vector<char> own_blob;
  std::string error;
  auto path_of = [&](int rank) {
    for (const Held& h : held)
      if (h.step == chosen && h.rank == rank) return h.path;
    return std::string();
  };
  owned_blobs.reserve(size_t(world));
  try {
    for (int r = 0; r < world; ++r) {
      const auto [holder, bytes] = plan.at(r);
      if (holder != me) continue;
      if (r == me) {
        own_blob = io::read_local_shard(path_of(r));
      } else {
        owned_blobs.push_back(io::read_local_shard(path_of(r)));
        if (owned_blobs.back().size() != bytes) throw data_error("the local shard changed size while restoring", path_of(r));
      }
    }
  } catch (const Error& e) {
    error = e.what();
  }
  std::vector<float> failed = {error.empty() ? 0.0f : 1.0f};
  host_all_reduce(ctx_, world_, failed, ReduceOp::max);
  if (failed[0] != 0) {
    *why_not = "reading the local tier failed" + (error.empty() ? std::string(" on another rank") : ": " + error);
    return std::nullopt;
  }
  size_t next = 0;
  std::vector<int> from_peers;
  for (int r = 0; r < world; ++r) {
    const auto [holder, bytes] = plan.at(r);
    if (holder == r) continue;
    from_peers.push_back(r);
    if (holder == me) sends.emplace_back(r, &owned_blobs[next++]);
    if (r == me) receives.emplace_back(holder, bytes);
  }
  std::vector<std::vector<char>> received;
  transfer_blobs(ctx_, world_, sends, receives, received);
  if (!received.empty()) own_blob = std::move(received.front());

  LocalRestore restored;
  try {
    std::vector<char> payload;
    const io::LocalShardHeader h =
        io::unpack_local_shard(own_blob, fmt::format("the local shard of rank {} at step {}", me, chosen), &payload);
    if (h.rank != me || h.step != chosen) throw data_error("the local shard is not the one asked for", host_dir());
    LocalTrainerState state;
    state.layout = h.layout;
    state.optimizer_step = h.optimizer_step;
    state.bytes = std::move(payload);
    trainer_.restore_local_state(state);
    restored.state = state_from_json(h.state_json, "local shard state");
  } catch (const Error& e) {
    error = e.what();
  }
  failed = {error.empty() ? 0.0f : 1.0f};
  host_all_reduce(ctx_, world_, failed, ReduceOp::max);
  if (failed[0] != 0) {
    // Some ranks may already hold the local state: the durable load that follows overwrites all of it.
    *why_not = "restoring the local tier failed" + (error.empty() ? std::string(" on another rank") : ": " + error);
    return std::nullopt;
  }
  restored.step = chosen;
  restored.from_peers = from_peers;
  std::set<std::string> partner_hosts;
  for (int r : from_peers) partner_hosts.insert(hosts_[size_t(plan.at(r).first)]);
  restored.message = from_peers.empty()
                         ? fmt::format("each rank's own copy of step {}", chosen)
                         : fmt::format("step {}, the shards of ranks {} from their partners' copies on {}", chosen,
                                       fmt::join(from_peers, ", "), fmt::join(partner_hosts, ", "));
  return restored;
}

}  // namespace tessera
