// Byte-level tokenizer and text-to-shard preparation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "io/file_util.h"
#include "io/json.h"
#include "tessera/data.h"
#include "tessera/error.h"
#include "tessera/tokenizer.h"

namespace tessera {

std::vector<uint16_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<uint16_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::string ByteTokenizer::decode(const int32_t* tokens, size_t count) const {
  std::string out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    int32_t t = tokens[i];
    if (t >= 0 && t < 256) out += char(static_cast<unsigned char>(t));
    else if (t == kEndOfText) out += "\n<|endoftext|>\n";
    else out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
  }
  return out;
}

namespace {

constexpr std::string_view kSeparator = "<|endoftext|>";

// Splits one file's text at lines consisting of exactly "<|endoftext|>" (the separator lines are
// dropped); empty documents are skipped.
void split_documents(const std::string& text, std::vector<std::string_view>& docs) {
  std::string_view all(text);
  size_t doc_start = 0, line_start = 0;
  while (line_start < all.size()) {
    size_t nl = all.find('\n', line_start);
    size_t line_end = nl == std::string_view::npos ? all.size() : nl;
    std::string_view line = all.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t next = nl == std::string_view::npos ? all.size() : nl + 1;
    if (line == kSeparator) {
      if (line_start > doc_start) docs.push_back(all.substr(doc_start, line_start - doc_start));
      doc_start = next;
    }
    line_start = next;
  }
  if (all.size() > doc_start) docs.push_back(all.substr(doc_start));
}

void append_document(std::vector<uint16_t>& tokens, std::string_view doc) {
  tokens.push_back(uint16_t(ByteTokenizer::kEndOfText));
  for (char c : doc) tokens.push_back(static_cast<unsigned char>(c));
}

// Where to cut a single document so that about `val_fraction` of its bytes go to val: just after
// the newline nearest to the exact cut, or at the exact cut if no newline leaves both parts non-empty.
size_t single_document_cut(std::string_view doc, double val_fraction) {
  const size_t n = doc.size();
  size_t exact = size_t(std::floor(double(n) * (1.0 - val_fraction)));
  exact = std::min(std::max<size_t>(exact, 1), n - 1);
  size_t best = exact;
  size_t best_distance = SIZE_MAX;
  size_t before = doc.rfind('\n', exact - 1);
  if (before != std::string_view::npos && before + 1 < n) {
    best = before + 1;
    best_distance = exact - best;
  }
  size_t after = doc.find('\n', exact);
  if (after != std::string_view::npos && after + 1 < n && after + 1 - exact < best_distance) best = after + 1;
  return best;
}

}  // namespace

DatasetSplit prepare_text_dataset(const std::vector<std::string>& text_files, const std::string& out_prefix,
                                  double val_fraction) {
  if (!(val_fraction > 0.0 && val_fraction < 1.0))
    throw config_error("validation fraction must lie strictly between 0 and 1 (got " + json::format_number(val_fraction) +
                       ")", "use e.g. 0.1");
  if (text_files.empty()) throw config_error("no text files given", "name at least one input text file");
  if (out_prefix.empty()) throw config_error("empty output prefix", "give a prefix such as data/shakespeare");

  std::vector<std::string> texts;
  texts.reserve(text_files.size());
  std::vector<std::string_view> docs;
  for (const std::string& path : text_files) {
    texts.push_back(io::read_file(path, "text file"));
    split_documents(texts.back(), docs);
  }
  const size_t n_docs = docs.size();
  std::string inputs;
  for (size_t i = 0; i < text_files.size(); ++i) inputs += (i ? ", " : "") + text_files[i];
  if (n_docs == 0) throw data_error("the input holds no text", inputs, "give non-empty text files");

  std::vector<uint16_t> train, val;
  if (n_docs == 1) {
    std::string_view doc = docs[0];
    if (doc.size() < 2)
      throw data_error("too little text to split into training and validation data (" + std::to_string(doc.size()) +
                           " byte)",
                       inputs, "give more text");
    size_t cut = single_document_cut(doc, val_fraction);
    append_document(train, doc.substr(0, cut));
    append_document(val, doc.substr(cut));
  } else {
    long rounded = std::lround(double(n_docs) * val_fraction);
    size_t n_val = size_t(std::min<long>(std::max<long>(rounded, 1), long(n_docs) - 1));
    for (size_t i = 0; i < n_docs; ++i) append_document(i < n_docs - n_val ? train : val, docs[i]);
  }

  DatasetSplit split;
  split.train_path = out_prefix + "_train.bin";
  split.val_path = out_prefix + "_val.bin";
  split.train_tokens = int64_t(train.size());
  split.val_tokens = int64_t(val.size());
  split.documents = int64_t(n_docs);
  write_token_shard(split.train_path, train.data(), split.train_tokens);
  write_token_shard(split.val_path, val.data(), split.val_tokens);
  return split;
}

}  // namespace tessera
