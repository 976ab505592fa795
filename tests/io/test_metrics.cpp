#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "io/json.h"
#include "tessera/metrics.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    REQUIRE(nl != std::string::npos);  // every line ends with a newline
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

}  // namespace

TEST_CASE("metrics: a record is one JSON object with kind first", "[io]") {
  const float loss = 5.54f;
  const double ms = 1.0 / 3.0;
  MetricsRecord r("train");
  r.add("step", 0).add("loss", double(loss)).add("ms", ms).add("tokens", int64_t(1) << 40)
      .add("grad_norm", std::nan("")).add("mfu", INFINITY).add("note", std::string("a \"quoted\"\nline"))
      .add("params", size_t(124439808));
  const std::string line = r.json();
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find("\"loss\":5.54,") != std::string::npos);  // float digits, not 5.539999961853027

  json::Value v = json::parse(line);
  const auto& m = v.members();
  REQUIRE(m.size() == 9);
  const char* keys[] = {"kind", "step", "loss", "ms", "tokens", "grad_norm", "mfu", "note", "params"};
  for (size_t i = 0; i < 9; ++i) CHECK(m[i].key == keys[i]);
  CHECK(v.at("kind").as_string() == "train");
  CHECK(v.at("step").as_int64() == 0);
  CHECK(float(v.at("loss").as_double()) == loss);  // round-trips the float
  CHECK(v.at("ms").as_double() == ms);              // round-trips the double
  CHECK(v.at("tokens").as_int64() == int64_t(1) << 40);
  CHECK(v.at("grad_norm").is_null());
  CHECK(v.at("mfu").is_null());
  CHECK(v.at("note").as_string() == "a \"quoted\"\nline");
  CHECK(v.at("params").as_int64() == 124439808);

  error_message([&] { r.add("loss", 1.0); }, ExitCode::bad_config);  // duplicate key
}

TEST_CASE("metrics: the log writes one flushed line per record and can append", "[io]") {
  TempDir dir;
  const std::string path = dir.file("log.jsonl");
  {
    MetricsLog log(path);
    CHECK(log.enabled());
    log.write(MetricsRecord("train").add("step", 1).add("loss", 4.5));
    // Flushed per line: readable before the log is closed.
    CHECK(lines_of(tessera::test::read_bytes(path)).size() == 1);
    log.write(MetricsRecord("eval").add("step", 1).add("loss", 4.75));
  }
  {
    MetricsLog log(path, /*append=*/true);
    log.write(MetricsRecord("checkpoint").add("step", 2).add("path", "ckpt/step_2"));
  }
  std::vector<std::string> lines = lines_of(tessera::test::read_bytes(path));
  REQUIRE(lines.size() == 3);
  CHECK(json::parse(lines[0]).at("kind").as_string() == "train");
  CHECK(json::parse(lines[1]).at("loss").as_double() == 4.75);
  CHECK(json::parse(lines[2]).at("path").as_string() == "ckpt/step_2");

  MetricsLog truncating(path);  // without append the file starts over
  CHECK(tessera::test::read_bytes(path).empty());

  MetricsLog disabled;
  CHECK_FALSE(disabled.enabled());
  disabled.write(MetricsRecord("train"));  // does nothing

  // A log beside checkpoints not written yet: its directory is created.
  {
    MetricsLog nested(dir.file("not/yet/log.jsonl"));
    nested.write(MetricsRecord("train").add("step", 0));
  }
  CHECK(lines_of(tessera::test::read_bytes(dir.file("not/yet/log.jsonl"))).size() == 1);
  // A directory that cannot be made (a file is in the way) is a config error naming the log.
  { MetricsLog blocker(dir.file("plain")); }
  std::string msg = error_message([&] { MetricsLog log(dir.file("plain/log.jsonl")); }, ExitCode::bad_config);
  CHECK(msg.find("cannot open the metrics log") != std::string::npos);
  CHECK(msg.find("plain/log.jsonl") != std::string::npos);
}
