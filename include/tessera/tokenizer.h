// The byte-level tokenizer and text dataset preparation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

// Byte-level: ids 0..255 are the bytes themselves, 256 is <|endoftext|>. Any byte string encodes.
class ByteTokenizer {
 public:
  static constexpr int kEndOfText = 256;
  static constexpr int kVocabSize = 257;

  std::vector<uint16_t> encode(const std::string& text) const;
  // <|endoftext|> decodes to "\n<|endoftext|>\n"; an id outside the vocabulary (a padded column a
  // model sampled) decodes to U+FFFD, so printing samples never fails.
  std::string decode(const int32_t* tokens, size_t count) const;
};

struct DatasetSplit {
  std::string train_path, val_path;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t documents = 0;
};

// Reads text files (UTF-8 or any bytes); each holds one or more documents separated by lines that
// consist of exactly "<|endoftext|>" (a trailing "\r" is tolerated; a file without such lines is one
// document; empty documents are skipped). Every document is preceded by the end-of-text token, as
// GPT-2 data is. Writes <out_prefix>_train.bin and <out_prefix>_val.bin: the last val_fraction of the
// documents (at least one) go to val; if there is only one document, the last val_fraction of its
// bytes, cut after a newline, go to val, as a piece preceded by its own end-of-text token.
// val_fraction must lie in (0, 1). Unreadable files or too little text: data error.
DatasetSplit prepare_text_dataset(const std::vector<std::string>& text_files, const std::string& out_prefix,
                                  double val_fraction = 0.1);

}  // namespace tessera
