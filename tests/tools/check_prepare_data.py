#!/usr/bin/env python3
"""tools/prepare_data.py end to end: a BPE tokenizer trained on the bundled corpus (no download),
the corpus prepared with it in every format (llm.c uint16 and uint32, Megatron; text and JSON
lines), the files checked byte for byte against their documented layouts and decoded back to the
text, and a LLaMA with the tokenizer's vocabulary trained on them: its loss falls, and every format
gives the same losses.

usage: check_prepare_data.py TESSERA_TRAIN SOURCE_DIR WORK_DIR
Exit codes: 0 pass, 1 failure, 77 tokenizers or numpy not importable (skip).
"""
import json
import os

from data_tools import need, script_main, prepare, read_llmc, read_megatron, run, train_losses, train_tokenizer

VOCAB = 512


def main(train, source, work):
    tokenizers, np = need("tokenizers", "numpy")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(source, "data", "tinyshakespeare.txt")
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    tokenizer_path = os.path.join(work, "tokenizer.json")
    tokenizer = train_tokenizer(corpus, tokenizer_path, VOCAB)
    sep = tokenizer.token_to_id("<|endoftext|>")

    # llm.c, uint16 (the vocabulary fits): the header, and the text back from the tokens.
    result = prepare(source, work, tokenizer_path, "u16", corpus)
    assert "documents: 1 (cut in two)" in result.stdout, result.stdout
    (header, train_ids) = read_llmc(os.path.join(work, "u16_train.bin"), np)
    (header_val, val_ids) = read_llmc(os.path.join(work, "u16_val.bin"), np)
    assert header == header_val == (20240520, 1), header
    assert train_ids[0] == sep and val_ids[0] == sep and int(max(train_ids.max(), val_ids.max())) < VOCAB
    assert np.count_nonzero(train_ids == sep) == 1 and np.count_nonzero(val_ids == sep) == 1
    assert tokenizer.decode(train_ids[1:].tolist()) + tokenizer.decode(val_ids[1:].tolist()) == text
    assert 0.08 < len(val_ids) / (len(train_ids) + len(val_ids)) < 0.12

    # llm.c uint32 (LLaMA-3's header) and Megatron: the same tokens.
    prepare(source, work, tokenizer_path, "u32", "--dtype", "uint32", corpus)
    header, ids = read_llmc(os.path.join(work, "u32_train.bin"), np)
    assert header == (20240801, 7) and ids.dtype == np.uint32 and np.array_equal(ids, train_ids)
    prepare(source, work, tokenizer_path, "meg", "--format", "megatron", corpus)
    code, docs = read_megatron(os.path.join(work, "meg_train"), np)
    assert code == 8 and len(docs) == 1 and np.array_equal(docs[0], train_ids)
    prepare(source, work, tokenizer_path, "meg32", "--format", "megatron", "--dtype", "int32", corpus)
    code, docs = read_megatron(os.path.join(work, "meg32_val"), np)
    assert code == 4 and np.array_equal(docs[0], val_ids)

    # JSON lines, one paragraph a document: the last tenth of the documents held out, each document
    # preceded by the separator; several shards when the split is longer than --shard-tokens.
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    jsonl = os.path.join(work, "paragraphs.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for p in paragraphs:
            f.write(json.dumps({"text": p, "id": len(p)}) + "\n")
    prepare(source, work, tokenizer_path, "para", "--format", "megatron", jsonl)
    _, train_docs = read_megatron(os.path.join(work, "para_train"), np)
    _, val_docs = read_megatron(os.path.join(work, "para_val"), np)
    n_val = round(len(paragraphs) * 0.1)
    assert (len(train_docs), len(val_docs)) == (len(paragraphs) - n_val, n_val), (len(train_docs), len(val_docs))
    assert all(d[0] == sep for d in train_docs + val_docs)
    assert tokenizer.decode(val_docs[-1][1:].tolist()) == paragraphs[-1]
    result = prepare(source, work, tokenizer_path, "paras", "--shard-tokens", "100000", jsonl)
    shards = sorted(f for f in os.listdir(work) if f.startswith("paras_train_"))
    assert len(shards) >= 4 and shards[0] == "paras_train_000000.bin", shards
    joined = np.concatenate([read_llmc(os.path.join(work, s), np)[1] for s in shards])
    assert np.array_equal(joined, np.concatenate(train_docs)), "shards hold the documents in order"
    assert "--data 'paras_train_*.bin'" in result.stdout.replace(work + os.sep, ""), result.stdout

    # Bad inputs: the documented exit codes, and nothing left behind.
    prepare(source, work, os.path.join(work, "absent.json"), "x", corpus, expect=2)
    prepare(source, work, tokenizer_path, "x", "--val-fraction", "1.5", corpus, expect=1)
    prepare(source, work, tokenizer_path, "x", "--separator", "<|nope|>", corpus, expect=1)
    bad = os.path.join(work, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"text": "fine"}\n{"body": "no text field"}\n')
    result = prepare(source, work, tokenizer_path, "x", bad, expect=2)
    assert "bad.jsonl:2: no field 'text'" in result.stderr, result.stderr
    assert not [f for f in os.listdir(work) if f.startswith("x_")], os.listdir(work)

    # A LLaMA (llama-tiny's pieces: RMSNorm, rotary positions, SwiGLU, two query heads per key/value
    # head) with the tokenizer's vocabulary learns from the shards; every format feeds it the same
    # sequences (the same seed and shuffled order), so the losses are equal, bitwise.
    model = ["--model", "custom", "--family", "llama", "--n-layer", "2", "--n-head", "4", "--n-kv-head", "2",
             "--n-embd", "64", "--vocab-size", str(VOCAB), "--max-seq-len", "64", "--seq-len", "64", "--batch-size", "8", "--lr", "3e-3", "--warmup", "10",
             "--threads", "1", "--sample-tokens", "0", "--eval-every", "0", "--seed", "3"]
    log = os.path.join(work, "u16.jsonl")
    run([train, *model, "--steps", "150", "--data", os.path.join(work, "u16_train.bin"), "--log", log], 0, "training")
    losses = train_losses(log)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print("losses: first %.4f (ln %d = %.4f), mean of the first ten %.4f, of the last ten %.4f" %
          (losses[0], VOCAB, np.log(VOCAB), first, last))
    assert abs(losses[0] - np.log(VOCAB)) < 0.3, losses[0]
    assert last < first - 1.0, (first, last)
    for name in ["u32_train.bin", "meg_train", "meg32_train.idx"]:
        other = os.path.join(work, name + ".jsonl")
        run([train, *model, "--steps", "3", "--data", os.path.join(work, name), "--log", other], 0, name)
        assert train_losses(other) == losses[:3], (name, train_losses(other), losses[:3])
    print("prepare_data.py: llm.c uint16/uint32 and Megatron uint16/int32 agree; loss %.3f -> %.3f" % (first, last))
    return 0


if __name__ == "__main__":
    script_main(main, __doc__)
