#!/usr/bin/env python3
"""Checks tessera's Hugging Face interoperability against transformers (float32, CPU), for one preset
of any family (GPT2LMHeadModel, LlamaForCausalLM):

1. export: transformers loads DIR/model (written by the fixture) cleanly, every tensor, the output
   layer tied to the embedding exactly when config.json says so, and its loss on the fixture's check
   tokens matches tessera's within 1e-4 relative;
2. training: replaying tessera's three steps from DIR/init with torch.optim.AdamW (same batches,
   learning rates, betas, eps, weight decay on the 2-D weights only, global-norm clipping) gives the
   same loss and gradient norm at every step within 1e-4 relative: tessera's backward and optimizer
   agree with autograd and PyTorch's AdamW;
3. import: a model transformers initialises itself with the same config, saved in bfloat16 and
   sharded (model.safetensors.index.json), imports into tessera with transformers' loss (computed in
   float32 from the same rounded weights) within 1e-4 relative.

usage: check_hf.py FIXTURE DIR MODEL...   (FIXTURE: the tessera_hf_fixture program; DIR: a fresh directory;
       each MODEL a preset, checked in DIR/MODEL)
Exit codes: 0 pass, 1 mismatch, 2 bad usage or files, 77 torch or transformers not importable (skip).
"""
import json
import os
import subprocess
import sys

SKIP = 77
TOLERANCE = 1e-4


def read_ints(line):
    return [int(x) for x in line.split()]


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def load(path, torch, AutoModelForCausalLM):
    model, info = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, output_loading_info=True)
    with open(os.path.join(path, "config.json")) as f:
        tied = json.load(f).get("tie_word_embeddings", False)
    missing = [k for k in info.get("missing_keys", []) if not (tied and k == "lm_head.weight")]
    other = {k: v for k, v in info.items() if v and k != "missing_keys"}
    if missing or other:
        raise RuntimeError(f"{path}: transformers did not load every tensor cleanly: missing {missing}, other {other}")
    shared = model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    if shared != tied:
        raise RuntimeError(f"{path}: the output layer is {'' if shared else 'not '}tied to the embedding, "
                           f"but config.json says tie_word_embeddings={tied}")
    return model


def check_tokens(directory):
    with open(os.path.join(directory, "inputs.txt")) as f:
        B, T = read_ints(f.readline())
        return B, T, read_ints(f.readline()), read_ints(f.readline())


def loss_of(model, torch, F, B, T, inputs, targets):
    with torch.no_grad():
        logits = model(torch.tensor(inputs).view(B, T)).logits  # (B, T, V)
        return F.cross_entropy(logits.reshape(B * T, -1), torch.tensor(targets)).item()


def check_export(directory, torch, F, AutoModelForCausalLM):
    B, T, inputs, targets = check_tokens(directory)
    with open(os.path.join(directory, "tessera_loss.txt")) as f:
        tessera_loss = float(f.read())
    model = load(os.path.join(directory, "model"), torch, AutoModelForCausalLM).eval()
    hf_loss = loss_of(model, torch, F, B, T, inputs, targets)
    rel = relative(tessera_loss, hf_loss)
    print(f"export ({type(model).__name__}): transformers loss {hf_loss:.7f}, tessera loss {tessera_loss:.7f}, "
          f"relative difference {rel:.2e}")
    return rel <= TOLERANCE


def check_training(directory, torch, F, AutoModelForCausalLM):
    with open(os.path.join(directory, "train.txt")) as f:
        header = f.readline().split()
        steps, B, T = (int(x) for x in header[:3])
        beta1, beta2, eps, weight_decay, grad_clip = (float(x) for x in header[3:])
        records = []
        for _ in range(steps):
            lr, loss, norm = (float(x) for x in f.readline().split())
            records.append((lr, loss, norm, read_ints(f.readline()), read_ints(f.readline())))
    model = load(os.path.join(directory, "init"), torch, AutoModelForCausalLM)
    model.train()  # dropout is 0 in the exported config
    named = list(model.named_parameters())
    params = [p for _, p in named]
    groups = [{"params": [p for _, p in named if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1.0, betas=(beta1, beta2), eps=eps)
    ok = True
    for step, (lr, tessera_loss, tessera_norm, inputs, targets) in enumerate(records):
        logits = model(torch.tensor(inputs).view(B, T)).logits
        loss = F.cross_entropy(logits.reshape(B * T, -1), torch.tensor(targets))
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf")).item()
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        rel_loss, rel_norm = relative(tessera_loss, loss.item()), relative(tessera_norm, norm)
        print(f"train step {step}: loss torch {loss.item():.7f} tessera {tessera_loss:.7f} ({rel_loss:.2e}), "
              f"grad norm torch {norm:.7f} tessera {tessera_norm:.7f} ({rel_norm:.2e})")
        ok = ok and rel_loss <= TOLERANCE and rel_norm <= TOLERANCE
    return ok


def check_import(fixture, directory, torch, F, AutoConfig, AutoModelForCausalLM):
    B, T, inputs, targets = check_tokens(directory)
    config = AutoConfig.from_pretrained(os.path.join(directory, "model"))
    torch.manual_seed(1)
    source = os.path.join(directory, "hf_import")
    AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(source, max_shard_size="300KB")
    if not os.path.exists(os.path.join(source, "model.safetensors.index.json")):
        raise RuntimeError(f"{source}: transformers wrote one file; the import check wants shards")
    reference = load(source, torch, AutoModelForCausalLM).eval()
    hf_loss = loss_of(reference, torch, F, B, T, inputs, targets)
    subprocess.run([fixture, "import", directory, source], check=True)
    with open(os.path.join(directory, "import_loss.txt")) as f:
        tessera_loss = float(f.read())
    rel = relative(tessera_loss, hf_loss)
    shards = len([n for n in os.listdir(source) if n.endswith(".safetensors")])
    print(f"import ({shards} bf16 shards): transformers loss {hf_loss:.7f}, tessera loss {tessera_loss:.7f}, "
          f"relative difference {rel:.2e}")
    return rel <= TOLERANCE


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    fixture, root, presets = argv[1], argv[2], argv[3:]
    try:
        import torch
        import torch.nn.functional as F
        from transformers import AutoConfig, AutoModelForCausalLM
    except Exception as e:  # ImportError, or a broken install
        print(f"SKIP: cannot import torch and transformers ({e})")
        return SKIP
    failed = False
    for preset in presets:
        print(f"--- {preset}")
        torch.manual_seed(0)
        directory = os.path.join(root, preset)
        try:
            os.makedirs(directory, exist_ok=True)
            subprocess.run([fixture, "export", directory, preset], check=True)
            export_ok = check_export(directory, torch, F, AutoModelForCausalLM)
            training_ok = check_training(directory, torch, F, AutoModelForCausalLM)
            import_ok = check_import(fixture, directory, torch, F, AutoConfig, AutoModelForCausalLM)
        except subprocess.CalledProcessError as e:
            print(f"FAIL: {preset}: the fixture failed: {e}")
            return 1
        except (OSError, ValueError, RuntimeError) as e:
            print(f"FAIL: {preset}: {e}")
            return 2 if isinstance(e, (OSError, ValueError)) else 1
        if not export_ok:
            print(f"FAIL: {preset}: transformers' loss on the export differs from tessera's by more than {TOLERANCE}")
        if not training_ok:
            print(f"FAIL: {preset}: replaying the training in PyTorch differs from tessera by more than {TOLERANCE}")
        if not import_ok:
            print(f"FAIL: {preset}: tessera's loss on the imported model differs from transformers' by more than "
                  f"{TOLERANCE}")
        failed = failed or not (export_ok and training_ok and import_ok)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
