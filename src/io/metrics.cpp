#include "tessera/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "io/json.h"
#include "tessera/error.h"

namespace tessera {

namespace {

// A float widened to double prints its float digits: they read back to the same float.
std::string json_double(double value) {
  const float narrowed = static_cast<float>(value);
  return static_cast<double>(narrowed) == value ? json::format_float(narrowed) : json::format_number(value);
}

}  // namespace

MetricsRecord::MetricsRecord(std::string kind) {
  body_ = "{\"kind\":" + json::quote(kind);
  keys_.push_back("kind");
}

void MetricsRecord::add_raw(const std::string& key, const std::string& json_value) {
  for (const std::string& k : keys_) TESSERA_CHECK(k != key, "metrics key '" + key + "' added twice");
  keys_.push_back(key);
  body_ += ',';
  body_ += json::quote(key);
  body_ += ':';
  body_ += json_value;
}

MetricsRecord& MetricsRecord::add(const std::string& key, double value) {
  add_raw(key, json_double(value));
  return *this;
}

MetricsRecord& MetricsRecord::add(const std::string& key, int64_t value) {
  add_raw(key, std::to_string(value));
  return *this;
}

MetricsRecord& MetricsRecord::add(const std::string& key, int value) { return add(key, int64_t(value)); }

MetricsRecord& MetricsRecord::add(const std::string& key, uint64_t value) {
  add_raw(key, std::to_string(value));
  return *this;
}

MetricsRecord& MetricsRecord::add(const std::string& key, const std::string& value) {
  add_raw(key, json::quote(value));
  return *this;
}

MetricsRecord& MetricsRecord::add(const std::string& key, const std::vector<double>& values) {
  std::string array = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) array += ',';
    array += json_double(values[i]);
  }
  add_raw(key, array + "]");
  return *this;
}

std::string MetricsRecord::json() const { return body_ + "}"; }

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  std::FILE* f = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f && errno == ENOENT) {
    // A log beside the checkpoints may come before the first checkpoint creates their directory.
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    f = std::fopen(path.c_str(), append ? "a" : "w");
  }
  if (!f)
    throw config_error("cannot open the metrics log: " + std::string(std::strerror(errno)),
                       "check that the directory exists and is writable", path);
  file_.reset(f);
}

void MetricsLog::write(const MetricsRecord& r) {
  if (!file_) return;
  std::string line = r.json();
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() || std::fflush(file_.get()) != 0)
    throw data_error("cannot write the metrics log: " + std::string(std::strerror(errno)), path_,
                     "check free disk space");
}

}  // namespace tessera
