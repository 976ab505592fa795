"""Helpers shared by the data-tool checks: a small BPE tokenizer trained on the bundled corpus, the
shard readers (from the formats' documented layouts, independent of the writers) and runs of
tessera-train and tools/prepare_data.py."""
import json
import os
import struct
import subprocess
import sys

SKIP = 77


def need(*modules):
    """Imports the modules or exits with the skip code, naming what is missing."""
    loaded = []
    for name in modules:
        try:
            loaded.append(__import__(name, fromlist=["_"]))
        except ImportError as e:
            print("TESSERA-SKIP: %s (%s) is not importable by %s" % (name, e, sys.executable))
            sys.exit(SKIP)
    return loaded


def train_tokenizer(corpus, path, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train([corpus], trainer)
    tokenizer.save(path)
    return tokenizer


def read_llmc(path, np):
    with open(path, "rb") as f:
        magic, version, count = struct.unpack("<3i", f.read(12))
    dtype = {(20240520, 1): np.uint16, (20240801, 7): np.uint32}[(magic, version)]
    tokens = np.fromfile(path, dtype=dtype, offset=1024)
    assert len(tokens) == count, (path, len(tokens), count)
    return (magic, version), tokens


def read_megatron(prefix, np):
    """(dtype code, documents' token arrays) from PREFIX.idx and PREFIX.bin."""
    with open(prefix + ".idx", "rb") as f:
        idx = f.read()
    assert idx[:9] == b"MMIDIDX\x00\x00", prefix
    (version,) = struct.unpack_from("<Q", idx, 9)
    (code,) = struct.unpack_from("<B", idx, 17)
    n, d = struct.unpack_from("<QQ", idx, 18)
    assert version == 1 and len(idx) == 34 + 12 * n + 8 * d, (prefix, version, len(idx))
    lengths = np.frombuffer(idx, dtype="<i4", count=n, offset=34)
    pointers = np.frombuffer(idx, dtype="<i8", count=n, offset=34 + 4 * n)
    boundaries = np.frombuffer(idx, dtype="<i8", count=d, offset=34 + 12 * n)
    dtype = {8: np.uint16, 4: np.int32}[code]
    data = np.fromfile(prefix + ".bin", dtype=dtype)
    item = np.dtype(dtype).itemsize
    docs = [data[p // item:p // item + l] for p, l in zip(pointers, lengths)]
    assert list(boundaries) == list(range(n + 1)), "one sequence per document"
    return code, docs


def run(command, expect=0, what=""):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if expect is not None and result.returncode != expect:
        raise AssertionError("%s: exit code %d, expected %d\n$ %s\nstdout:\n%s\nstderr:\n%s" %
                             (what, result.returncode, expect, " ".join(map(str, command)), result.stdout,
                              result.stderr))
    return result


def train_losses(log):
    with open(log) as f:
        return [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]


def prepare(source, work, tokenizer, out, *extra, expect=0):
    return run([sys.executable, os.path.join(source, "tools", "prepare_data.py"), "--tokenizer", tokenizer,
                "--out", os.path.join(work, out), *extra], expect, "prepare_data.py " + " ".join(extra))


def script_main(main, doc):
    """Runs main(TESSERA_TRAIN, SOURCE_DIR, WORK_DIR) from the command line and exits with its code."""
    if len(sys.argv) != 4:
        print(doc)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
