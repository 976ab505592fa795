#!/usr/bin/env python3
"""Checks tessera's rotary embeddings against transformers' LLaMA code (float32, CPU).

For each case written by tessera_rope_fixture: transformers' LlamaRotaryEmbedding, built from a
LlamaConfig with the case's rope_theta and rope_scaling (Llama 3.1's "llama3" type or none), must
give tessera's inverse frequencies within 1e-6 relative (tessera computes them in float64 and rounds
once; transformers in float32, a few roundings apart), and apply_rotary_pos_emb on the q and k heads at positions
offset..offset+T-1 must give tessera's rope_forward (1e-5 relative to the largest value), with v
untouched.

usage: check_rope.py FILE
Exit codes: 0 pass, 1 mismatch, 2 bad usage or file, 77 torch or transformers not importable (skip).
"""
import sys

SKIP = 77


def parse(path):
    cases, case = [], None
    with open(path) as f:
        for line in f:
            key, *values = line.split()
            if key == "case":
                case = {"sizes": [int(x) for x in values[:6]], "theta": float(values[6]), "factor": float(values[7]),
                        "low": float(values[8]), "high": float(values[9]), "original": int(values[10])}
                cases.append(case)
            else:
                case[key] = [float(x) for x in values]
    return cases


def check(case, torch, LlamaConfig, LlamaRotaryEmbedding, apply_rotary_pos_emb):
    B, T, NH, NKV, HS, offset = case["sizes"]
    scaling = None
    if case["factor"]:
        scaling = {"rope_type": "llama3", "factor": case["factor"], "low_freq_factor": case["low"],
                   "high_freq_factor": case["high"], "original_max_position_embeddings": case["original"]}
    config = LlamaConfig(hidden_size=NH * HS, num_attention_heads=NH, num_key_value_heads=NKV, head_dim=HS,
                         max_position_embeddings=131072, rope_theta=case["theta"], rope_scaling=scaling)
    rotary = LlamaRotaryEmbedding(config)
    ours = torch.tensor(case["inv_freq"], dtype=torch.float32)
    freq_error = ((rotary.inv_freq.float() - ours).abs() / ours.abs()).max().item()
    x = torch.tensor(case["qkv"], dtype=torch.float32).view(B, T, NH + 2 * NKV, HS)
    q, k, v = x[:, :, :NH].transpose(1, 2), x[:, :, NH:NH + NKV].transpose(1, 2), x[:, :, NH + NKV:]
    positions = torch.arange(offset, offset + T).unsqueeze(0).expand(B, T)
    cos, sin = rotary(x, positions)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    expected = torch.cat([q.transpose(1, 2), k.transpose(1, 2), v], dim=2).reshape(-1)
    got = torch.tensor(case["out"], dtype=torch.float32)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    v_same = torch.equal(got.view(B, T, NH + 2 * NKV, HS)[:, :, NH + NKV:], v)
    label = f"B={B} T={T} NH={NH} NKV={NKV} HS={HS} offset={offset} theta={case['theta']} factor={case['factor']}"
    ok = freq_error <= 1e-6 and error <= 1e-5 and v_same
    print(f"{'ok  ' if ok else 'FAIL'} {label}: inv_freq error {freq_error:.2e}, rotation error {error:.2e}, "
          f"v {'untouched' if v_same else 'CHANGED'}")
    return ok


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    try:
        import torch
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    except ImportError as e:
        print(f"skipped: {e}")
        return SKIP
    try:
        cases = parse(sys.argv[1])
    except (OSError, ValueError, IndexError, TypeError) as e:
        print(f"cannot read {sys.argv[1]}: {e}")
        return 2
    if not cases:
        print(f"{sys.argv[1]} holds no cases")
        return 2
    results = [check(c, torch, LlamaConfig, LlamaRotaryEmbedding, apply_rotary_pos_emb) for c in cases]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
