#!/usr/bin/env python3
"""Checks tessera's Hugging Face export against transformers (float32, CPU):

1. transformers' GPT2LMHeadModel loads DIR/model cleanly (every tensor, lm_head tied to wte) and its
   loss on the fixture's check tokens matches tessera's within 1e-4 relative;
2. replaying tessera's training from DIR/init with torch.optim.AdamW (same batches, learning rates,
   betas, eps, weight decay on the 2-D weights only, global-norm clipping) gives the same loss and
   gradient norm at every step within 1e-4 relative: tessera's backward and optimizer agree with
   autograd and PyTorch's AdamW.

usage: check_hf_export.py DIR   (DIR written by the tessera_hf_fixture program)
Exit codes: 0 pass, 1 mismatch, 2 bad usage or files, 77 torch or transformers not importable (skip).
"""
import os
import sys

SKIP = 77
TOLERANCE = 1e-4


def read_ints(line):
    return [int(x) for x in line.split()]


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def load(path, torch, GPT2LMHeadModel):
    model, info = GPT2LMHeadModel.from_pretrained(path, torch_dtype=torch.float32, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if k != "lm_head.weight"]
    other = {k: v for k, v in info.items() if v and k != "missing_keys"}
    if missing or other:
        raise RuntimeError(f"{path}: transformers did not load every tensor cleanly: missing {missing}, other {other}")
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise RuntimeError(f"{path}: lm_head is not tied to wte")
    return model


def check_export(directory, torch, F, GPT2LMHeadModel):
    with open(os.path.join(directory, "inputs.txt")) as f:
        B, T = read_ints(f.readline())
        inputs, targets = read_ints(f.readline()), read_ints(f.readline())
    with open(os.path.join(directory, "tessera_loss.txt")) as f:
        tessera_loss = float(f.read())
    model = load(os.path.join(directory, "model"), torch, GPT2LMHeadModel).eval()
    with torch.no_grad():
        logits = model(torch.tensor(inputs).view(B, T)).logits  # (B, T, V)
        hf_loss = F.cross_entropy(logits.reshape(B * T, -1), torch.tensor(targets)).item()
    rel = relative(tessera_loss, hf_loss)
    print(f"export: transformers loss {hf_loss:.7f}, tessera loss {tessera_loss:.7f}, relative difference {rel:.2e}")
    return rel <= TOLERANCE


def check_training(directory, torch, F, GPT2LMHeadModel):
    with open(os.path.join(directory, "train.txt")) as f:
        header = f.readline().split()
        steps, B, T = (int(x) for x in header[:3])
        beta1, beta2, eps, weight_decay, grad_clip = (float(x) for x in header[3:])
        records = []
        for _ in range(steps):
            lr, loss, norm = (float(x) for x in f.readline().split())
            records.append((lr, loss, norm, read_ints(f.readline()), read_ints(f.readline())))
    model = load(os.path.join(directory, "init"), torch, GPT2LMHeadModel)
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


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import torch
        import torch.nn.functional as F
        from transformers import GPT2LMHeadModel
    except Exception as e:  # ImportError, or a broken install
        print(f"SKIP: cannot import torch and transformers ({e})")
        return SKIP
    torch.manual_seed(0)
    try:
        export_ok = check_export(argv[1], torch, F, GPT2LMHeadModel)
        training_ok = check_training(argv[1], torch, F, GPT2LMHeadModel)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"FAIL: {e}")
        return 2 if isinstance(e, (OSError, ValueError)) else 1
    if not export_ok:
        print(f"FAIL: transformers' loss on the export differs from tessera's by more than {TOLERANCE} relative")
    if not training_ok:
        print(f"FAIL: replaying the training in PyTorch differs from tessera by more than {TOLERANCE} relative")
    return 0 if export_ok and training_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
