#!/usr/bin/env python3
"""Tokenizes text or JSON-lines files with a Hugging Face tokenizer.json and writes token data for
tessera-train: llm.c shards (uint16, or uint32 for vocabularies over 65,536) or a Megatron-LM indexed
dataset (.bin + .idx), split into training and validation data.

    python tools/prepare_data.py --tokenizer tokenizer.json --out data/corpus [--format llmc|megatron] FILE...

Inputs: text files, whose documents are separated by lines reading exactly <|endoftext|> (as for
tessera-prepare-data), and JSON-lines files (.jsonl or .json, optionally .gz), one document per line
in the field --json-key. Every document is preceded by a separator token (the tokenizer's
<|endoftext|>, <|begin_of_text|> or <s>, or --separator), as llm.c's data scripts do. The last
--val-fraction of the documents go to PREFIX_val (for a single document: its last lines).

Writes PREFIX_train.bin and PREFIX_val.bin (llm.c; a split longer than --shard-tokens is written as
PREFIX_train_000000.bin, PREFIX_train_000001.bin, ...), or PREFIX_train.bin/.idx and
PREFIX_val.bin/.idx (Megatron). Needs the `tokenizers` and `numpy` packages (pip install tokenizers numpy).
Exit codes as tessera's programs: 1 bad arguments, 2 bad input data.
"""

import argparse
import gzip
import io
import json
import os
import struct
import sys
import time

LLMC_HEADER = {"uint16": (20240520, 1), "uint32": (20240801, 7)}  # llm.c dev/data/data_common.py
MEGATRON_CODES = {"uint16": 8, "int32": 4}  # megatron/core/datasets/indexed_dataset.py DType
SEPARATOR_CANDIDATES = ["<|endoftext|>", "<|begin_of_text|>", "<s>"]
DOCUMENT_MARKER = "<|endoftext|>"


class Failure(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def bad_args(message):
    return Failure(message, 1)


def bad_data(message):
    return Failure(message, 2)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 for usage errors; tessera's programs use 1
        raise bad_args(message + " (see --help)")


def parse_args(argv):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("inputs", nargs="+", metavar="FILE", help="text or JSON-lines files")
    p.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer.json")
    p.add_argument("--out", required=True, help="output prefix")
    p.add_argument("--format", choices=["llmc", "megatron"], default="llmc", help="output format (default llmc)")
    p.add_argument("--dtype", choices=["auto", "uint16", "uint32", "int32"], default="auto",
                   help="token type: llmc uint16 or uint32, megatron uint16 or int32 (auto: the smallest that fits "
                        "the vocabulary; Megatron's rule: uint16 below 65,500)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of the documents held out (default 0.1)")
    p.add_argument("--json-key", default="text", help="the field holding a JSON-lines document's text (default text)")
    p.add_argument("--separator", default="auto",
                   help="the token placed before every document, or 'none' (auto: the first of %s in the vocabulary)"
                        % ", ".join(SEPARATOR_CANDIDATES))
    p.add_argument("--shard-tokens", type=int, default=100_000_000,
                   help="llmc: tokens per shard at most (default 100,000,000; the header limit is 2^31-1)")
    p.add_argument("--batch-bytes", type=int, default=8 << 20,
                   help="text handed to the tokenizer at once (its threads share a batch; default 8 MiB)")
    args = p.parse_args(argv)
    if not 0.0 < args.val_fraction < 1.0:
        raise bad_args("--val-fraction must lie strictly between 0 and 1 (got %g)" % args.val_fraction)
    if not 0 < args.shard_tokens < 2**31:
        raise bad_args("--shard-tokens must lie in 1..2^31-1 (got %d)" % args.shard_tokens)
    if args.batch_bytes < 1:
        raise bad_args("--batch-bytes must be positive")
    if args.format == "llmc" and args.dtype == "int32":
        raise bad_args("--dtype int32 is a Megatron type; llm.c shards hold uint16 or uint32")
    if args.format == "megatron" and args.dtype == "uint32":
        raise bad_args("--dtype uint32 is an llm.c type; Megatron datasets hold uint16 or int32")
    return args


# ---------------------------------------------------------------------------------------------
# Reading documents


def is_jsonl(path):
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith(".jsonl") or name.endswith(".json")


class CountingReader(io.RawIOBase):
    """Counts the bytes read from the file itself (compressed bytes for .gz), for the progress bar."""

    def __init__(self, raw, progress):
        self.raw, self.progress = raw, progress

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.raw.readinto(buffer)
        self.progress.advance(n or 0)
        return n


def open_text(path, progress):
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise bad_data("cannot open %s: %s" % (path, e.strerror))
    counted = io.BufferedReader(CountingReader(raw, progress))
    stream = gzip.GzipFile(fileobj=counted) if path.endswith(".gz") else counted
    return io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")


def text_documents(path, progress):
    """Documents of a text file: separated by lines reading exactly <|endoftext|> (a trailing \\r
    tolerated); empty documents skipped."""
    lines = []
    with open_text(path, progress) as f:
        for line in f:
            if line.rstrip("\r\n") == DOCUMENT_MARKER:
                if lines:
                    yield "".join(lines)
                lines = []
            else:
                lines.append(line)
    if lines:
        yield "".join(lines)


def jsonl_documents(path, key, progress):
    with open_text(path, progress) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise bad_data("%s:%d: not a JSON object (%s)" % (path, number, e.msg))
            if not isinstance(record, dict) or key not in record:
                raise bad_data("%s:%d: no field '%s' (pass --json-key)" % (path, number, key))
            if not isinstance(record[key], str):
                raise bad_data("%s:%d: field '%s' is not a string" % (path, number, key))
            if record[key]:
                yield record[key]


def documents(paths, key, progress):
    for path in paths:
        try:
            yield from (jsonl_documents(path, key, progress) if is_jsonl(path) else text_documents(path, progress))
        except UnicodeDecodeError as e:
            raise bad_data("%s: not UTF-8 text (%s)" % (path, e.reason))
        except (OSError, EOFError) as e:
            raise bad_data("cannot read %s: %s" % (path, e))


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A bar on stderr when it is a terminal: input bytes read, tokens written, rate, time left."""

    def __init__(self, label, total_bytes):
        self.label, self.total = label, max(total_bytes, 1)
        self.done = self.tokens = 0
        self.start = self.shown = time.monotonic()
        self.live = sys.stderr.isatty()

    def advance(self, n):
        self.done += n
        now = time.monotonic()
        if self.live and now - self.shown >= 0.2:
            self.shown = now
            self.show(now)

    def show(self, now, end="\r"):
        fraction = min(self.done / self.total, 1.0)
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 and fraction < 1 else 0
        bar = "#" * int(30 * fraction)
        sys.stderr.write("%s %5.1f%% |%-30s| %.1f/%.1f MB  %.1f MB/s  %s tokens  %s left%s" %
                         (self.label, 100 * fraction, bar, self.done / 1e6, self.total / 1e6, rate / 1e6,
                          format(self.tokens, ","), "%.0f s" % left, end))
        sys.stderr.flush()

    def finish(self):
        if self.live:
            self.done = self.total
            self.show(time.monotonic(), end="\n")


# ---------------------------------------------------------------------------------------------
# Writers


def numpy_module():
    import numpy
    return numpy


class LlmcWriter:
    """llm.c shards written as they fill: header (count patched at the end), then the tokens. Each
    shard is written to NAME.tmp and renamed when complete."""

    def __init__(self, prefix, dtype, shard_tokens):
        self.prefix, self.dtype, self.limit = prefix, dtype, shard_tokens
        self.magic, self.version = LLMC_HEADER[dtype]
        self.shards = []  # (tmp path, tokens)
        self.file, self.count, self.total = None, 0, 0

    def _open(self):
        path = "%s.part%06d.tmp" % (self.prefix, len(self.shards))
        self.file = open(path, "wb")
        self.file.write(b"\0" * 1024)
        self.shards.append([path, 0])
        self.count = 0

    def write(self, tokens):
        start = 0
        while start < len(tokens):
            if self.file is None or self.count == self.limit:
                self._close_shard()
                self._open()
            n = min(len(tokens) - start, self.limit - self.count)
            self.file.write(tokens[start:start + n].astype(self.dtype, copy=False).tobytes())
            self.count += n
            self.total += n
            self.shards[-1][1] = self.count
            start += n

    def _close_shard(self):
        if self.file is None:
            return
        header = struct.pack("<3i", self.magic, self.version, self.count)
        self.file.seek(0)
        self.file.write(header)
        self.file.close()
        self.file = None

    def close(self):
        self._close_shard()
        if not self.shards:
            raise bad_data("no tokens for %s" % self.prefix)
        names = ["%s.bin" % self.prefix] if len(self.shards) == 1 else \
            ["%s_%06d.bin" % (self.prefix, i) for i in range(len(self.shards))]
        for (tmp, _), name in zip(self.shards, names):
            os.replace(tmp, name)
        return names

    def abandon(self):
        if self.file is not None:
            self.file.close()
        for tmp, _ in self.shards:
            if os.path.exists(tmp):
                os.remove(tmp)


class MegatronWriter:
    """PREFIX.bin (tokens of every document back to back) and PREFIX.idx, one sequence per
    document, as Megatron-LM's IndexedDatasetBuilder writes them."""

    def __init__(self, prefix, dtype):
        import array
        self.prefix, self.dtype = prefix, dtype
        self.bin_tmp = prefix + ".bin.tmp"
        self.file = open(self.bin_tmp, "wb")
        self.lengths = array.array("q")
        self.total = 0

    def write(self, tokens):
        self.file.write(tokens.astype(self.dtype, copy=False).tobytes())
        self.lengths.append(len(tokens))
        self.total += len(tokens)

    def close(self):
        np = numpy_module()
        self.file.close()
        if not self.lengths:
            raise bad_data("no tokens for %s" % self.prefix)
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        if lengths.max() >= 2**31:
            raise bad_data("a document of %d tokens is longer than a Megatron sequence length (int32) holds" % lengths.max())
        itemsize = np.dtype(self.dtype).itemsize
        pointers = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1] * itemsize, out=pointers[1:])
        boundaries = np.arange(len(lengths) + 1, dtype=np.int64)
        idx_tmp = self.prefix + ".idx.tmp"
        with open(idx_tmp, "wb") as f:
            f.write(b"MMIDIDX\x00\x00")
            f.write(struct.pack("<Q", 1))
            f.write(struct.pack("<B", MEGATRON_CODES[self.dtype]))
            f.write(struct.pack("<Q", len(lengths)))
            f.write(struct.pack("<Q", len(boundaries)))
            f.write(lengths.astype("<i4").tobytes())
            f.write(pointers.astype("<i8").tobytes())
            f.write(boundaries.astype("<i8").tobytes())
        os.replace(self.bin_tmp, self.prefix + ".bin")
        os.replace(idx_tmp, self.prefix + ".idx")
        return [self.prefix + ".bin", self.prefix + ".idx"]

    def abandon(self):
        self.file.close()
        for tmp in (self.bin_tmp, self.prefix + ".idx.tmp"):
            if os.path.exists(tmp):
                os.remove(tmp)


# ---------------------------------------------------------------------------------------------


def load_tokenizer(path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise bad_args("the 'tokenizers' package is missing: pip install tokenizers numpy")
    try:
        numpy_module()
    except ImportError:
        raise bad_args("the 'numpy' package is missing: pip install numpy")
    if not os.path.isfile(path):
        raise bad_data("tokenizer file %s does not exist or is not a file" % path)
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises its own exception types
        raise bad_data("%s is not a Hugging Face tokenizer.json: %s" % (path, e))


def choose_separator(tokenizer, requested):
    if requested == "none":
        return None, None
    candidates = SEPARATOR_CANDIDATES if requested == "auto" else [requested]
    for token in candidates:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token, token_id
    if requested == "auto":
        raise bad_args("the tokenizer has none of %s: name the token that separates documents with --separator TOKEN, "
                       "or pass --separator none" % ", ".join(SEPARATOR_CANDIDATES))
    raise bad_args("--separator %s is not in the tokenizer's vocabulary" % requested)


def choose_dtype(fmt, requested, vocab_size):
    if fmt == "llmc":
        dtype = requested if requested != "auto" else ("uint16" if vocab_size <= 2**16 else "uint32")
        if dtype == "uint16" and vocab_size > 2**16:
            raise bad_args("a vocabulary of %d does not fit uint16: use --dtype uint32" % vocab_size)
    else:
        dtype = requested if requested != "auto" else ("uint16" if vocab_size < 65500 else "int32")
        if dtype == "uint16" and vocab_size > 2**16:
            raise bad_args("a vocabulary of %d does not fit uint16: use --dtype int32" % vocab_size)
    return dtype


def count_documents(paths, key):
    """The documents of the inputs, and the byte length of the first (for a single document's cut)."""
    quiet = Progress("", 1)
    quiet.live = False
    count, first_length = 0, 0
    for doc in documents(paths, key, quiet):
        if count == 0:
            first_length = len(doc)
        count += 1
    return count, first_length


def single_document_cut(doc, val_fraction):
    """Where to cut a single document so that about val_fraction of it goes to validation: after the
    newline nearest to the exact cut (as tessera-prepare-data does), else at the exact cut."""
    n = len(doc)
    exact = min(max(int(n * (1.0 - val_fraction)), 1), n - 1)
    before = doc.rfind("\n", 0, exact)
    after = doc.find("\n", exact)
    options = [p + 1 for p in (before, after) if p >= 0 and p + 1 < n]
    return min(options, key=lambda c: abs(c - exact)) if options else exact


def run(args):
    tokenizer = load_tokenizer(args.tokenizer)  # says what to install when a package is missing
    np = numpy_module()
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    separator, separator_id = choose_separator(tokenizer, args.separator)
    dtype = choose_dtype(args.format, args.dtype, vocab_size)
    for path in args.inputs:
        if not os.path.isfile(path):
            raise bad_data("input %s does not exist or is not a regular file" % path)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise bad_args("the output directory %s does not exist" % out_dir)

    n_docs, first_length = count_documents(args.inputs, args.json_key)
    if n_docs == 0:
        raise bad_data("the inputs hold no text: %s" % ", ".join(args.inputs))
    if n_docs == 1:
        if first_length < 2:
            raise bad_data("too little text to split into training and validation data")
        n_train = 1  # the single document is cut in two
    else:
        n_val = min(max(round(n_docs * args.val_fraction), 1), n_docs - 1)
        n_train = n_docs - n_val

    def writer(split):
        prefix = "%s_%s" % (args.out, split)
        return LlmcWriter(prefix, dtype, args.shard_tokens) if args.format == "llmc" else MegatronWriter(prefix, dtype)

    writers = {"train": writer("train"), "val": writer("val")}
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    total_bytes = sum(os.path.getsize(p) for p in args.inputs)
    progress = Progress("tokenizing", total_bytes)
    pending, pending_bytes = [], 0  # (split, text)
    largest = [0]

    def flush():
        if not pending:
            return
        encodings = encode([text for _, text in pending], add_special_tokens=False)
        for (split, _), encoding in zip(pending, encodings):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            if separator_id is not None:
                ids = np.concatenate([np.array([separator_id], dtype=np.int64), ids])
            if len(ids):
                largest[0] = max(largest[0], int(ids.max()))
                writers[split].write(ids)
                progress.tokens += len(ids)
        pending.clear()

    try:
        for index, doc in enumerate(documents(args.inputs, args.json_key, progress)):
            if n_docs == 1:
                cut = single_document_cut(doc, args.val_fraction)
                pending.extend([("train", doc[:cut]), ("val", doc[cut:])])
            else:
                pending.append(("train" if index < n_train else "val", doc))
            pending_bytes += len(doc)
            if pending_bytes >= args.batch_bytes:
                flush()
                pending_bytes = 0
        flush()
        progress.finish()
        if largest[0] >= vocab_size or (dtype == "uint16" and largest[0] >= 2**16):
            raise bad_data("the tokenizer produced id %d, outside its vocabulary of %d" % (largest[0], vocab_size))
        written = {split: (w.close(), w.total) for split, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abandon()
        raise

    kind = "llm.c %s" % dtype if args.format == "llmc" else "Megatron %s" % dtype
    print("tokenizer: %s (vocabulary %d), documents separated by %s" %
          (args.tokenizer, vocab_size, separator if separator else "nothing"))
    print("documents: %d (%s)" % (n_docs, "cut in two" if n_docs == 1 else "%d for validation" % (n_docs - n_train)))
    for split, (files, tokens) in written.items():
        print("%-5s %s tokens in %s: %s" % (split + ":", format(tokens, ","), kind, ", ".join(files)))

    def data_flag(files):
        bins = [f for f in files if f.endswith(".bin")]
        if len(bins) == 1:
            return bins[0]
        return "'%s_*.bin'" % bins[0].rsplit("_", 1)[0]

    print("train with: tessera-train --data %s --val-data %s --vocab-size %d ..." %
          (data_flag(written["train"][0]), data_flag(written["val"][0]), vocab_size))


def main(argv=None):
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
        return 0
    except Failure as e:
        sys.stderr.write("prepare_data.py: error: %s\n" % e)
        return e.code
    except KeyboardInterrupt:
        sys.stderr.write("prepare_data.py: interrupted; no output written\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
