// Metrics as JSON lines: one object per line, flushed per line, first key "kind"
// ("train", "eval", or an event such as "checkpoint").
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

class MetricsRecord {
 public:
  explicit MetricsRecord(std::string kind);

  // Keys must be unique within a record. Doubles are printed with the shortest digits that read
  // back to the same value; a double that holds a float exactly (a float loss) is printed with the
  // shortest digits that read back to that float ("5.54", not "5.539999961853027"). NaN and
  // infinities are written as null.
  MetricsRecord& add(const std::string& key, double value);
  MetricsRecord& add(const std::string& key, int64_t value);
  MetricsRecord& add(const std::string& key, int value);
  MetricsRecord& add(const std::string& key, uint64_t value);  // size_t counts
  MetricsRecord& add(const std::string& key, const std::string& value);
  MetricsRecord& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  MetricsRecord& add(const std::string& key, const std::vector<double>& values);  // a JSON array

  std::string json() const;  // one line, no trailing newline

 private:
  void add_raw(const std::string& key, const std::string& json_value);

  std::string body_;
  std::vector<std::string> keys_;
};

class MetricsLog {
 public:
  MetricsLog() = default;  // disabled: write() does nothing
  // Truncates the file unless append (config error if it cannot be opened).
  explicit MetricsLog(const std::string& path, bool append = false);

  bool enabled() const { return file_ != nullptr; }
  void write(const MetricsRecord& r);  // one line, flushed
  const std::string& path() const { return path_; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

}  // namespace tessera
