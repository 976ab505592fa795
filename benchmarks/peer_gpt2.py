#!/usr/bin/env python3
"""The PyTorch peer of tessera's training benchmark: a plain GPT-2 trained exactly as tessera-train
trains it, so that the two can be timed against each other (benchmarks/compare_peers.py runs both).

Same model (GPT-2: learned positions, pre-LayerNorm blocks with eps 1e-5, tanh GELU, causal
scaled_dot_product_attention, tied lm_head), same initialisation (read from a Hugging Face GPT-2
directory that tessera-train --export wrote), same token shards read in the same order (llm.c's
format; each step reads the next B*T+1 tokens, as tessera's DataLoader does on one rank), same AdamW
(betas, eps, weight decay on the 2-D weights only, global-norm clipping) and the same learning-rate
schedule (linear warm-up, cosine decay to the floor). On a GPU it trains in bf16 autocast with fp32
weights and fused AdamW; on the CPU in float32.

usage:
  peer_gpt2.py train --init DIR --data SHARDS --batch-size B --seq-len T --steps N --json OUT [--compile] ...
  peer_gpt2.py export-llmc --init DIR --out FILE [--dtype bf16|fp32]   (llm.c's train_gpt2cu checkpoint)

`train` writes one JSON object to --json: per-step milliseconds and losses, the device, and the peak
memory (torch's allocator peak on a GPU; the process's peak resident set on the CPU).
Exit codes: 0 done, 1 bad arguments, 2 bad input files, 77 torch not importable.
"""
import argparse
import glob
import json
import math
import os
import resource
import struct
import sys
import time

SKIP = 77
SHARD_MAGIC, SHARD_VERSION, SHARD_HEADER_INTS = 20240520, 1, 256
LLMC_MAGIC = 20240326


class InputError(Exception):
    """Bad input files: exit code 2."""


# ---------------------------------------------------------------------------------------------
# Data: llm.c's token shards, read as tessera's DataLoader reads them on one rank.

def shard_paths(pattern):
    """A path, a comma-separated list, or globs (each glob's matches sorted by name), as tessera."""
    paths = []
    for part in pattern.split(","):
        matches = sorted(glob.glob(part)) if any(c in part for c in "*?[") else [part]
        if not matches:
            raise InputError(f"{part}: no file matches")
        paths.extend(matches)
    return paths


def read_shard(path, np):
    try:
        header = np.fromfile(path, dtype=np.int32, count=SHARD_HEADER_INTS)
    except OSError as e:
        raise InputError(f"{path}: {e}")
    if header.size < SHARD_HEADER_INTS or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise InputError(f"{path}: not a token shard (llm.c format: magic {SHARD_MAGIC}, version {SHARD_VERSION})")
    count = int(header[2])
    tokens = np.memmap(path, dtype=np.uint16, mode="r", offset=SHARD_HEADER_INTS * 4)
    if tokens.size != count:
        raise InputError(f"{path}: header says {count} tokens, file holds {tokens.size}")
    return tokens


class Batches:
    """Consecutive windows of B*T+1 tokens (targets shifted by one), shard after shard, then a new epoch."""

    def __init__(self, pattern, B, T, vocab_size, np):
        self.np, self.B, self.T, self.vocab_size = np, B, T, vocab_size
        self.shards = [read_shard(p, np) for p in shard_paths(pattern)]
        if all(s.size < B * T + 1 for s in self.shards):
            raise InputError(f"{pattern}: no shard holds the {B * T + 1} tokens of one batch")
        self.shard, self.position = 0, 0

    def next(self):
        n = self.B * self.T
        while self.shards[self.shard].size < self.position + n + 1:
            self.shard, self.position = (self.shard + 1) % len(self.shards), 0
        window = self.np.asarray(self.shards[self.shard][self.position:self.position + n + 1], dtype=self.np.int64)
        if int(window.max()) >= self.vocab_size:
            raise InputError(f"token id {int(window.max())} is outside the vocabulary ({self.vocab_size})")
        self.position += n
        return window[:-1].reshape(self.B, self.T), window[1:].reshape(self.B, self.T)


# ---------------------------------------------------------------------------------------------
# The model, from a Hugging Face GPT-2 directory.

def read_config(directory):
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            c = json.load(f)
        return {"n_layer": int(c["n_layer"]), "n_head": int(c["n_head"]), "n_embd": int(c["n_embd"]),
                "vocab_size": int(c["vocab_size"]), "max_seq_len": int(c.get("n_positions", c.get("n_ctx")))}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a GPT-2 config ({e})")


def read_weights(directory):
    """name -> float32 torch tensor, from model.safetensors (read without the safetensors package)."""
    import numpy as np
    import torch
    path = os.path.join(directory, "model.safetensors")
    try:
        with open(path, "rb") as f:
            (header_bytes,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_bytes))
            data = f.read()
    except (OSError, ValueError, struct.error) as e:
        raise InputError(f"{path}: cannot read safetensors ({e})")
    kinds = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in kinds:
            raise InputError(f"{path}: tensor {name} has dtype {info['dtype']}; expected F32 or F16")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=kinds[info["dtype"]]).reshape(info["shape"])
        out[name.removeprefix("transformer.")] = torch.from_numpy(array.astype(np.float32))
    return out


def build_model(torch, config):
    nn, F = torch.nn, torch.nn.functional
    C, NH = config["n_embd"], config["n_head"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, eps=1e-5), nn.LayerNorm(C, eps=1e-5)
            self.c_attn, self.attn_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(config["vocab_size"], C)
            self.wpe = nn.Embedding(config["max_seq_len"], C)
            self.h = nn.ModuleList(Block() for _ in range(config["n_layer"]))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied lm_head
            return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))

    return GPT()


def load_hf(model, weights):
    """Copies Hugging Face GPT-2 tensors into the model (Conv1D weights are [in, out]: transposed)."""
    import torch
    renames = {"attn.c_attn": "c_attn", "attn.c_proj": "attn_proj", "mlp.c_fc": "c_fc", "mlp.c_proj": "mlp_proj"}
    state = {}
    for name, tensor in weights.items():
        target = name
        for hf, ours in renames.items():
            target = target.replace(f".{hf}.", f".{ours}.")
        if target.endswith(".weight") and any(f".{ours}." in target for ours in renames.values()):
            tensor = tensor.t().contiguous()
        state[target] = tensor
    state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"the Hugging Face weights do not fit the model: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for p in model.parameters():
            if not torch.isfinite(p).all():
                raise InputError("the initial weights hold non-finite values")


# ---------------------------------------------------------------------------------------------
# Training, as tessera-train trains.

def learning_rate(step, lr, min_lr, warmup, total):
    """tessera's LRSchedule: linear warm-up (step s gets lr*(s+1)/warmup), cosine to min_lr at total."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def train(args):
    try:
        import numpy as np
        import torch
    except Exception as e:  # ImportError, or a broken install
        print(f"SKIP: cannot import torch and numpy ({e})")
        return SKIP
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("peer_gpt2: --device cuda but torch sees no GPU", file=sys.stderr)
        return 1
    dtype = args.precision if args.precision != "auto" else ("bf16" if device == "cuda" else "f32")
    if dtype == "bf16" and device != "cuda":
        print("peer_gpt2: bf16 runs on the GPU only here (tessera trains f32 on the CPU)", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False  # f32 means f32, as in tessera
    torch.backends.cudnn.allow_tf32 = False

    config = read_config(args.init)
    if args.seq_len > config["max_seq_len"]:
        print(f"peer_gpt2: --seq-len {args.seq_len} exceeds the model's context {config['max_seq_len']}", file=sys.stderr)
        return 1
    model = build_model(torch, config)
    load_hf(model, read_weights(args.init))
    model.to(device)
    batches = Batches(args.data, args.batch_size, args.seq_len, config["vocab_size"], np)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8,
                                  fused=device == "cuda")
    step_fn = model
    if args.compile:
        step_fn = torch.compile(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16")
    total_steps = args.warmup_steps + args.steps
    params = list(model.parameters())

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    step_ms, losses, norms = [], [], []
    for step in range(total_steps):
        t0 = time.perf_counter()
        x, y = batches.next()
        x = torch.from_numpy(x).to(device, non_blocking=True)
        y = torch.from_numpy(y).to(device, non_blocking=True)
        with autocast:
            loss = step_fn(x, y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip if args.grad_clip > 0 else float("inf"))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.lr, args.min_lr, args.lr_warmup, args.schedule_steps or total_steps)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value, norm_value = loss.item(), norm.item()  # tessera reads both every step too
        sync()
        step_ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss_value)
        norms.append(norm_value)
        if args.verbose:
            print(f"step {step + 1}/{total_steps} | loss {loss_value:.4f} | norm {norm_value:.4f} | {step_ms[-1]:.1f} ms",
                  flush=True)
        if not math.isfinite(loss_value):
            print(f"peer_gpt2: non-finite loss at step {step}", file=sys.stderr)
            break

    result = {
        "peer": "torch.compile" if args.compile else "pytorch eager",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "precision": dtype,
        "warmup_steps": args.warmup_steps,
        "step_ms": step_ms,
        "losses": losses,
        "grad_norms": norms,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes(),
        "peak_memory_kind": "torch allocator peak" if device == "cuda" else "peak resident set",
    }
    with open(args.json, "w") as f:
        json.dump(result, f)
    return 0 if len(losses) == total_steps else 4


# ---------------------------------------------------------------------------------------------
# llm.c's checkpoint (train_gpt2cu -e FILE): header of 256 int32, then its 16 tensors in order,
# the vocabulary padded to a multiple of 128, linear weights as [out, in].

def export_llmc(args):
    try:
        import numpy as np
        import torch
    except Exception as e:
        print(f"SKIP: cannot import torch and numpy ({e})")
        return SKIP
    config = read_config(args.init)
    w = read_weights(args.init)
    L, C, V, maxT = config["n_layer"], config["n_embd"], config["vocab_size"], config["max_seq_len"]
    Vp = (V + 127) // 128 * 128
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [LLMC_MAGIC, 5 if args.dtype == "bf16" else 3, maxT, V, L, config["n_head"], C, Vp]
    wte = torch.zeros(Vp, C)
    wte[:V] = w["wte.weight"]

    def per_layer(name, transpose=False):
        return torch.stack([w[f"h.{i}.{name}"].t() if transpose else w[f"h.{i}.{name}"] for i in range(L)])

    tensors = [wte, w["wpe.weight"], per_layer("ln_1.weight"), per_layer("ln_1.bias"),
               per_layer("attn.c_attn.weight", True), per_layer("attn.c_attn.bias"),
               per_layer("attn.c_proj.weight", True), per_layer("attn.c_proj.bias"),
               per_layer("ln_2.weight"), per_layer("ln_2.bias"),
               per_layer("mlp.c_fc.weight", True), per_layer("mlp.c_fc.bias"),
               per_layer("mlp.c_proj.weight", True), per_layer("mlp.c_proj.bias"),
               w["ln_f.weight"], w["ln_f.bias"]]
    with open(args.out, "wb") as f:
        f.write(header.tobytes())
        for t in tensors:
            t = t.contiguous()
            if args.dtype == "bf16":
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
            else:
                f.write(t.to(torch.float32).numpy().tobytes())
    print(f"wrote {args.out}: llm.c checkpoint version {header[1]} ({args.dtype}), V={V} padded to {Vp}")
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and time the PyTorch GPT-2")
    t.add_argument("--init", required=True, help="Hugging Face GPT-2 directory (tessera-train --export)")
    t.add_argument("--data", required=True, help="token shards: a path, a comma-separated list or a glob")
    t.add_argument("--batch-size", type=int, required=True)
    t.add_argument("--seq-len", type=int, required=True)
    t.add_argument("--steps", type=int, default=20, help="timed steps")
    t.add_argument("--warmup-steps", type=int, default=5, help="untimed steps before them")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--precision", default="auto", choices=["auto", "f32", "bf16"])
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--min-lr", type=float, default=1e-4)
    t.add_argument("--lr-warmup", type=int, default=20, help="learning-rate warm-up steps (tessera's --warmup)")
    t.add_argument("--schedule-steps", type=int, default=0, help="steps of the cosine schedule (0: all steps run)")
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--beta1", type=float, default=0.9)
    t.add_argument("--beta2", type=float, default=0.95)
    t.add_argument("--json", required=True, help="write the result here")
    t.add_argument("--verbose", action="store_true", help="print every step")
    e = sub.add_parser("export-llmc", help="write llm.c's checkpoint from a Hugging Face directory")
    e.add_argument("--init", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args(argv[1:])
    if args.command == "train" and (args.batch_size < 1 or args.seq_len < 1 or args.steps < 1 or args.warmup_steps < 0):
        print("peer_gpt2: --batch-size, --seq-len and --steps must be positive, --warmup-steps not negative",
              file=sys.stderr)
        return 1
    try:
        return train(args) if args.command == "train" else export_llmc(args)
    except InputError as e:
        print(f"peer_gpt2: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
