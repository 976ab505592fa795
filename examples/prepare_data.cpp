// tessera-prepare-data: text files -> byte-level token shards for tessera-train.
//
//   tessera-prepare-data [--val-fraction F] --out PREFIX FILE...
//
// Writes PREFIX_train.bin and PREFIX_val.bin (llm.c's shard format). Documents inside a file are
// separated by lines consisting of exactly <|endoftext|>; see tessera/tokenizer.h.
#include <cstdio>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/output_checks.h"
#include "tessera/error.h"
#include "tessera/tokenizer.h"

int main(int argc, char** argv) {
  return tessera::program::run_program("tessera-prepare-data", [&]() -> int {
    std::string out;
    double val_fraction = 0.1;
    tessera::program::FlagParser flags(
        "tessera-prepare-data",
        "tessera-prepare-data [--val-fraction F] --out PREFIX FILE...\n\n"
        "Tokenizes text files byte by byte (vocabulary 257: 256 bytes and <|endoftext|>) and writes\n"
        "PREFIX_train.bin and PREFIX_val.bin. Lines consisting of exactly <|endoftext|> separate documents;\n"
        "the last documents (or, for a single document, its last lines) go to validation.\n");
    flags.add("out", &out, "output prefix: writes PREFIX_train.bin and PREFIX_val.bin");
    flags.add("val-fraction", &val_fraction, "fraction of the text held out for validation").above(0).below(1);
    if (!flags.parse(argc, argv)) return 0;
    if (out.empty())
      throw tessera::config_error("--out PREFIX is required", "run tessera-prepare-data --help");
    if (flags.positional().empty())
      throw tessera::config_error("no input text files given", "run tessera-prepare-data --help");
    // Both outputs checked before the text is read and tokenized.
    tessera::program::check_output_file("--out", out + "_train.bin");
    tessera::program::check_output_file("--out", out + "_val.bin");

    tessera::DatasetSplit split = tessera::prepare_text_dataset(flags.positional(), out, val_fraction);
    std::printf("documents: %lld\n", static_cast<long long>(split.documents));
    std::printf("train: %s (%lld tokens)\n", split.train_path.c_str(), static_cast<long long>(split.train_tokens));
    std::printf("val:   %s (%lld tokens)\n", split.val_path.c_str(), static_cast<long long>(split.val_tokens));
    return 0;
  });
}
