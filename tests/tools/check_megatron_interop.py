#!/usr/bin/env python3
"""Megatron-LM interoperability, with megatron-core's own IndexedDataset code:

1. Megatron reads the .bin/.idx that tools/prepare_data.py writes (uint16 and int32): the same
   documents as tessera's reading of its layout;
2. tessera reads what Megatron's IndexedDatasetBuilder writes: a clean dataset trains, and one with
   an id outside the vocabulary stops tessera-train at start with exit code 2, naming the token
   offset, sequence and document Megatron's index gives it.

usage: check_megatron_interop.py TESSERA_TRAIN SOURCE_DIR WORK_DIR
Exit codes: 0 pass, 1 failure, 77 megatron-core, torch, tokenizers or numpy not importable (skip).
"""
import os
import warnings

from data_tools import need, script_main, prepare, read_megatron, run, train_tokenizer

VOCAB = 512


def main(train, source, work):
    warnings.simplefilter("ignore")  # megatron-core warns that Transformer Engine and Apex are absent
    np, torch, _ = need("numpy", "torch", "tokenizers")
    (indexed,) = need("megatron.core.datasets.indexed_dataset")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(source, "data", "tinyshakespeare.txt")
    tokenizer_path = os.path.join(work, "tokenizer.json")
    train_tokenizer(corpus, tokenizer_path, VOCAB)

    # 1. Megatron reads prepare_data.py's output.
    for dtype in ["uint16", "int32"]:
        prepare(source, work, tokenizer_path, dtype, "--format", "megatron", "--dtype", dtype, corpus)
        for split in ["train", "val"]:
            prefix = os.path.join(work, "%s_%s" % (dtype, split))
            _, ours = read_megatron(prefix, np)
            theirs = indexed.IndexedDataset(prefix)
            assert theirs.index.dtype == getattr(np, dtype), theirs.index.dtype
            assert len(theirs) == len(ours) and list(theirs.document_indices) == list(range(len(ours) + 1))
            for a, b in zip(ours, (theirs[i] for i in range(len(theirs)))):
                assert np.array_equal(a, b)

    # 2. tessera reads Megatron's builder's output: 40 documents of 50..249 tokens.
    def build(prefix, docs, dtype):  # one sequence per document, as preprocess_data.py writes them
        builder = indexed.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
        for doc in docs:
            builder.add_document(torch.from_numpy(doc.astype(np.int64)), [len(doc)])
        builder.finalize(prefix + ".idx")

    rng = np.random.default_rng(5)
    documents = [rng.integers(0, VOCAB, size=int(rng.integers(50, 250))) for _ in range(40)]
    model = ["--model", "custom", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--vocab-size", str(VOCAB),
             "--max-seq-len", "32", "--seq-len", "32", "--batch-size", "4", "--steps", "2", "--threads", "1",
             "--sample-tokens", "0", "--eval-every", "0"]
    for dtype in [np.uint16, np.int32]:
        prefix = os.path.join(work, "built_%s" % np.dtype(dtype).name)
        build(prefix, documents, dtype)
        _, ours = read_megatron(prefix, np)
        assert all(np.array_equal(a, b) for a, b in zip(ours, documents))
        result = run([train, *model, "--data", prefix], 0, "tessera-train on Megatron's dataset")
        assert "Megatron %s" % np.dtype(dtype).name in result.stdout, result.stdout

        # Document 17's token 30 becomes VOCAB: the error names what Megatron's index says.
        bad = [d.copy() for d in documents]
        bad[17][30] = VOCAB
        build(prefix + "_bad", bad, dtype)
        offset = sum(len(d) for d in documents[:17]) + 30
        result = run([train, *model, "--data", prefix + "_bad.bin"], 2, "a bad id in Megatron's dataset")
        expected = "token id %d at token offset %d (byte %d), sequence 17, document 17 of %s_bad.idx" % (
            VOCAB, offset, offset * np.dtype(dtype).itemsize, prefix)
        assert expected in result.stderr, (expected, result.stderr)
        assert "step " not in result.stdout, result.stdout
    print("Megatron-LM reads prepare_data.py's datasets and tessera reads Megatron's")
    return 0


if __name__ == "__main__":
    script_main(main, __doc__)
