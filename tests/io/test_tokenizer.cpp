#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "tessera/data.h"
#include "tessera/tokenizer.h"

using namespace tessera;
using tessera::test::error_message;
using tessera::test::TempDir;

namespace {

constexpr uint16_t kEot = ByteTokenizer::kEndOfText;

std::vector<uint16_t> shard_tokens(const std::string& path) {
  TokenShard shard(path);
  std::vector<uint16_t> out;
  for (int64_t i = 0; i < shard.size(); ++i) out.push_back(uint16_t(shard.token(i)));
  return out;
}

// The expected tokens of documents: each one preceded by <|endoftext|>.
std::vector<uint16_t> documents(const std::vector<std::string>& docs) {
  std::vector<uint16_t> out;
  for (const std::string& d : docs) {
    out.push_back(kEot);
    for (unsigned char c : d) out.push_back(c);
  }
  return out;
}

}  // namespace

TEST_CASE("tokenizer: byte encode/decode round trip", "[io]") {
  ByteTokenizer tok;
  std::string all;
  for (int c = 0; c < 256; ++c) all += char(c);
  all += "héllo wörld\n";
  std::vector<uint16_t> ids = tok.encode(all);
  REQUIRE(ids.size() == all.size());
  CHECK(ids[0] == 0);
  CHECK(ids[255] == 255);
  CHECK(ids[256] == 'h');
  std::vector<int32_t> ids32(ids.begin(), ids.end());
  CHECK(tok.decode(ids32.data(), ids32.size()) == all);

  const int32_t with_eot[] = {'a', ByteTokenizer::kEndOfText, 'b', 5000, -1};
  CHECK(tok.decode(with_eot, 5) == "a\n<|endoftext|>\nb\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(ByteTokenizer::kVocabSize == 257);
}

TEST_CASE("tokenizer: prepare_text_dataset separates documents and holds out the last ones", "[io]") {
  TempDir dir;
  const std::string a = dir.file("a.txt"), b = dir.file("b.txt");
  tessera::test::write_bytes(a, "first doc\nline two\n<|endoftext|>\nsecond doc\n<|endoftext|>\n");
  // \r\n separators, a separator at the start (no empty document), a line that only contains the marker.
  tessera::test::write_bytes(b, "<|endoftext|>\r\nthird <|endoftext|> inline\n<|endoftext|>\r\nfourth\nend");
  DatasetSplit split = prepare_text_dataset({a, b}, dir.file("out"), 0.25);
  CHECK(split.documents == 4);
  CHECK(split.train_path == dir.file("out_train.bin"));
  CHECK(split.val_path == dir.file("out_val.bin"));
  const std::vector<uint16_t> train = documents({"first doc\nline two\n", "second doc\n", "third <|endoftext|> inline\n"});
  const std::vector<uint16_t> val = documents({"fourth\nend"});
  CHECK(shard_tokens(split.train_path) == train);
  CHECK(shard_tokens(split.val_path) == val);
  CHECK(split.train_tokens == int64_t(train.size()));
  CHECK(split.val_tokens == int64_t(val.size()));

  // Half of four documents go to val; a tiny fraction still holds out one.
  split = prepare_text_dataset({a, b}, dir.file("half"), 0.5);
  CHECK(shard_tokens(split.val_path) == documents({"third <|endoftext|> inline\n", "fourth\nend"}));
  split = prepare_text_dataset({a, b}, dir.file("tiny"), 0.01);
  CHECK(shard_tokens(split.val_path) == val);
  split = prepare_text_dataset({a, b}, dir.file("most"), 0.99);
  CHECK(shard_tokens(split.train_path) == documents({"first doc\nline two\n"}));
}

TEST_CASE("tokenizer: a single document is split after a newline", "[io]") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "line number " + std::to_string(i) + " of the only document\n";
  const std::string path = dir.file("one.txt");
  tessera::test::write_bytes(path, text);
  DatasetSplit split = prepare_text_dataset({path}, dir.file("one"), 0.1);
  CHECK(split.documents == 1);
  std::vector<uint16_t> train = shard_tokens(split.train_path), val = shard_tokens(split.val_path);
  REQUIRE(train.size() > 1);
  REQUIRE(val.size() > 1);
  CHECK(train[0] == kEot);
  CHECK(val[0] == kEot);
  CHECK(train.back() == '\n');  // cut right after a newline
  std::string joined(train.begin() + 1, train.end());
  joined.append(val.begin() + 1, val.end());
  CHECK(joined == text);
  CHECK(double(val.size() - 1) / double(text.size()) == Approx(0.1).margin(0.03));
  CHECK(std::string(val.begin() + 1, val.begin() + 13) == "line number ");

  // No newline at all: the cut falls at the exact fraction.
  tessera::test::write_bytes(path, std::string(100, 'x'));
  split = prepare_text_dataset({path}, dir.file("flat"), 0.2);
  CHECK(split.train_tokens == 1 + 80);
  CHECK(split.val_tokens == 1 + 20);
}

TEST_CASE("tokenizer: prepare_text_dataset on the bundled tiny Shakespeare", "[io]") {
  TempDir dir;
  const std::string source = std::string(TESSERA_SOURCE_DIR) + "/data/tinyshakespeare.txt";
  const std::string text = tessera::test::read_bytes(source);
  DatasetSplit split = prepare_text_dataset({source}, dir.file("shakespeare"), 0.1);
  CHECK(split.documents == 1);
  CHECK(split.train_tokens + split.val_tokens == int64_t(text.size()) + 2);
  CHECK(double(split.val_tokens) / double(text.size()) == Approx(0.1).margin(0.01));
  LoaderOptions file_order;
  file_order.shuffle = false;
  DataLoader loader(split.val_path, 4, 64, ByteTokenizer::kVocabSize, 0, 1, file_order);
  std::vector<int32_t> x(256), y(256);
  loader.next_batch(x.data(), y.data());
  CHECK(x[0] == ByteTokenizer::kEndOfText);
}

TEST_CASE("tokenizer: prepare_text_dataset errors", "[io]") {
  TempDir dir;
  const std::string empty = dir.file("empty.txt"), only_marker = dir.file("marker.txt");
  tessera::test::write_bytes(empty, "");
  tessera::test::write_bytes(only_marker, "<|endoftext|>\n<|endoftext|>\n");
  std::string msg = error_message([&] { prepare_text_dataset({dir.file("absent.txt")}, dir.file("x")); });
  CHECK(msg.find("absent.txt") != std::string::npos);
  msg = error_message([&] { prepare_text_dataset({empty, only_marker}, dir.file("x")); });
  CHECK(msg.find("no text") != std::string::npos);
  error_message([&] { prepare_text_dataset({empty}, dir.file("x"), 0.0); }, ExitCode::bad_config);
  error_message([&] { prepare_text_dataset({empty}, dir.file("x"), 1.0); }, ExitCode::bad_config);
  error_message([&] { prepare_text_dataset({}, dir.file("x")); }, ExitCode::bad_config);
}
