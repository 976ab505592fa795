#!/usr/bin/env python3
"""Times tessera against its peers on the same GPT-2 training, in one invocation.

Peers: tessera (tessera-train, in any layout of ranks), PyTorch eager and torch.compile
(benchmarks/peer_gpt2.py) and, when --llmc names a train_gpt2cu binary the user built, llm.c. All
train the same model from the same initialisation (a Hugging Face directory exported by tessera-train,
converted to llm.c's checkpoint for llm.c) on the same token shards, at the same global batch, with
the same optimizer and schedule. Each runs --warmup-steps untimed steps and --steps timed ones; the
table gives the median step time, tokens/s, each peer's speed relative to tessera, the peak memory,
and MFU in two conventions:

  PaLM   (tessera's):  6*N' + 12*L*C*T FLOPs per token, N' = parameters without position embeddings
  llm.c:               6*N  +  6*L*C*T FLOPs per token, N  = all parameters (vocabulary unpadded)

against the device's peak: the GPU's dense bf16 peak (known cards) or --peak-tflops; on the CPU
--peak-tflops, or --cpu-peak to measure it (tessera-cpu-peak: every thread's FMA throughput at once),
else MFU is n/a. --gemm-share (CPU) adds the share of that peak tessera's GEMMs reach in the same
configuration (tessera-bench-training --profile-ops: the matmul kernels' time against their FLOPs).
Peak memory: on the CPU the largest resident set of any of the peer's processes (getrusage); on a GPU
the device memory in use above the idle baseline (nvidia-smi, polled), the same measure for every peer.

The first-step losses of all peers are printed: from one initialisation and one batch they agree
(f32: to about 1e-6; --check-loss TOL makes a larger relative difference an error).

Examples:
  python3 benchmarks/compare_peers.py --model tiny --batch-size 8 --seq-len 128 --threads 2 --gemm-share
  python3 benchmarks/compare_peers.py --model tiny --ranks 2 --layout tp=2 --threads 2 ...   (tessera on 2 ranks)
  python3 benchmarks/compare_peers.py --model gpt2 --batch-size 64 --seq-len 1024 --llmc ~/llm.c/train_gpt2cu

Exit codes: 0 done, 1 bad arguments or a peer failed or --check-loss exceeded, 2 bad input files,
77 the Python given by --python cannot import torch (nothing was compared).
"""
import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = 77
# Dense bf16 tensor-core peak per GPU by product name (as tessera's Context reports it).
GPU_PEAKS = [("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
             ("H800", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("A10G", 70e12)]
PEER_NAMES = {"tessera": "tessera", "eager": "pytorch eager", "compile": "torch.compile", "llmc": "llm.c"}


class Failure(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Running a peer and measuring its peak memory.

def gpu_memory_used_bytes():
    """Device memory in use on all visible GPUs (nvidia-smi), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        return sum(int(x) for x in out.stdout.split()) * 1024 * 1024
    except ValueError:
        return None


class GpuMemoryPeak:
    """Polls nvidia-smi while a peer runs: peak device memory above the idle baseline."""

    def __init__(self):
        self.baseline = gpu_memory_used_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.2):
            used = gpu_memory_used_bytes()
            if used is not None and self.peak is not None:
                self.peak = max(self.peak, used)

    def __enter__(self):
        if self.baseline is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def bytes(self):
        return None if self.baseline is None else self.peak - self.baseline


def run_measured(name, cmd, log_path, on_gpu, env=None):
    """Runs cmd with output to log_path; returns the peak memory in bytes (None if unknown)."""
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    with open(log_path, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        with GpuMemoryPeak() if on_gpu else _Nothing() as gpu:
            t0 = time.time()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            elapsed = time.time() - t0
    print(f"[{name}] exit code {proc.returncode} after {elapsed:.1f} s; log {log_path}", flush=True)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        code = SKIP if proc.returncode == SKIP else 1
        raise Failure(f"{name} failed (exit code {proc.returncode}); the end of {log_path}:\n{tail}", code)
    # ru_maxrss of a waited-for child covers it and the children it waited for: the largest one.
    return gpu.bytes() if on_gpu else usage.ru_maxrss * 1024


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# The peers.

def layout_flags(spec):
    """tessera-bench-training's layout syntax (tp=2,pp=2,mb=4,sp,zero,...) as tessera-train flags."""
    keys = {"tp": "--tp", "pp": "--pp", "dp": "--dp", "mb": "--microbatches", "v": "--virtual-stages",
            "schedule": "--schedule"}
    flags, values = [], {"tp": 1, "pp": 1, "dp": 0, "mb": 1}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key in ("sp", "zero"):
            flags += ["--sp"] if key == "sp" else ["--zero", "1"]
        elif key in keys and value:
            flags += [keys[key], value]
            if key in values:
                try:
                    values[key] = int(value)
                except ValueError:
                    raise Failure(f"--layout '{spec}': '{item}' needs a number")
        else:
            raise Failure(f"--layout '{spec}': unknown item '{item}' (use tp=, pp=, dp=, mb=, schedule=, v=, sp, zero)")
    return flags, values


def tessera_peer(a, work, init, data, device, precision):
    flags, layout = layout_flags(a.layout)
    tp, pp, mb = layout["tp"], layout["pp"], layout["mb"]
    if a.ranks % (tp * pp):
        raise Failure(f"--ranks {a.ranks} is not a multiple of tp x pp = {tp * pp}")
    dp = layout["dp"] or a.ranks // (tp * pp)
    if a.batch_size % (dp * mb):
        raise Failure(f"--batch-size {a.batch_size} (global) does not divide into dp {dp} x microbatches {mb}")
    threads = max(1, a.threads // a.ranks) if a.threads else 0
    log = os.path.join(work, "tessera.jsonl")
    # --no-shuffle: the peers read consecutive windows in file order, as llm.c's loader does.
    cmd = [os.path.join(a.build, "tessera-train"), "--init-from", init, "--data", data, "--no-shuffle",
           "--batch-size", str(a.batch_size // (dp * mb)), "--seq-len", str(a.seq_len),
           "--steps", str(a.warmup_steps + a.steps), "--lr", str(a.lr), "--min-lr", str(a.min_lr),
           "--warmup", str(a.lr_warmup), "--eval-every", "0", "--eval-batches", "1", "--sample-tokens", "0",
           "--device", device, "--precision", precision, "--threads", str(threads), "--timeout", "0",
           "--log", log] + flags
    if a.ranks > 1:
        cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(a.ranks)] + cmd
    if os.path.exists(log):
        os.remove(log)
    peak = run_measured("tessera", cmd, os.path.join(work, "tessera.log"), device == "cuda")
    steps = [json.loads(line) for line in open(log) if '"kind":"train"' in line.replace(" ", "")]
    return {"step_ms": [s["ms"] for s in steps], "losses": [s["loss"] for s in steps], "peak_memory_bytes": peak,
            "devices": min(a.ranks, a.gpus) if device == "cuda" else 1,
            "setup": f"{a.ranks} rank{'s' if a.ranks > 1 else ''}" + (f" ({a.layout})" if a.layout else "") +
                     (f", {threads} thread{'s' if threads > 1 else ''} each" if device == "cpu" and threads else "")}


def torch_peer(a, work, init, data, device, precision, compiled):
    name = "compile" if compiled else "eager"
    out = os.path.join(work, f"{name}.json")
    cmd = [a.python, os.path.join(REPO, "benchmarks", "peer_gpt2.py"), "train", "--init", init, "--data", data,
           "--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len), "--steps", str(a.steps),
           "--warmup-steps", str(a.warmup_steps), "--device", device, "--precision", precision,
           "--threads", str(a.threads), "--lr", str(a.lr), "--min-lr", str(a.min_lr), "--lr-warmup", str(a.lr_warmup),
           "--json", out] + (["--compile"] if compiled else [])
    peak = run_measured(PEER_NAMES[name], cmd, os.path.join(work, f"{name}.log"), device == "cuda")
    with open(out) as f:
        r = json.load(f)
    return {"step_ms": r["step_ms"], "losses": r["losses"], "peak_memory_bytes": peak, "devices": 1,
            "setup": f"torch {r['torch']}, {r['device']}"}


def llmc_peer(a, work, init, data, val_data, precision):
    checkpoint = os.path.join(work, "llmc_init.bin")
    dtype = "bf16" if precision == "bf16" else "fp32"
    subprocess.run([a.python, os.path.join(REPO, "benchmarks", "peer_gpt2.py"), "export-llmc", "--init", init,
                    "--out", checkpoint, "--dtype", dtype], check=True)
    total = a.warmup_steps + a.steps
    cmd = [a.llmc, "-i", data, "-j", val_data, "-e", checkpoint, "-b", str(a.batch_size), "-t", str(a.seq_len),
           "-x", str(total), "-l", str(a.lr), "-u", str(a.lr_warmup), "-q", str(a.min_lr / a.lr), "-c", "0.1",
           "-v", str(total + 1), "-m", "1", "-s", "0", "-h", "0", "-r", "0", "-o", os.path.join(work, "llmc_out")]
    log = os.path.join(work, "llmc.log")
    peak = run_measured("llm.c", cmd, log, True)
    pattern = re.compile(r"^step\s+\d+/\d+ \| loss ([-\d.naif]+) .*?\| ([\d.]+) ms \|")
    steps = [pattern.match(line) for line in open(log)]
    steps = [m for m in steps if m]
    return {"step_ms": [float(m.group(2)) for m in steps], "losses": [float(m.group(1)) for m in steps],
            "peak_memory_bytes": peak, "devices": 1, "setup": f"{a.llmc} ({dtype}, -r 0)"}


def measure_cpu_peak(a):
    """The measured single-precision peak of --threads cores (tessera-cpu-peak), in FLOP/s."""
    threads = a.threads or os.cpu_count() or 1
    out = subprocess.run([os.path.join(a.build, "tessera-cpu-peak"), "--threads", str(threads)],
                         capture_output=True, text=True, check=True).stdout
    print(out.rstrip(), flush=True)
    match = re.search(r"^peak:\s+([\d.]+) TFLOP/s", out, re.M)
    if not match:
        raise Failure(f"tessera-cpu-peak printed no peak:\n{out}")
    return float(match.group(1)) * 1e12, threads


def gemm_share(a, device, precision, peak):
    """GEMM GFLOP/s per rank of tessera's configuration and its share of the peak, from a short
    tessera-bench-training --profile-ops run; None (with the reason printed) where it does not apply."""
    _, layout = layout_flags(a.layout)
    if a.init or layout["pp"] > 1:
        print("[gemm share] skipped: needs --model (not --init) and a layout without pipeline stages", flush=True)
        return None
    dp = layout["dp"] or a.ranks // layout["tp"]
    threads = max(1, a.threads // a.ranks) if a.threads else 0
    spec = a.layout or "tp=1"
    cmd = [os.path.join(a.build, "tessera-bench-training"), "--model", a.model,
           "--batch-size", str(a.batch_size // (dp * layout["mb"])), "--seq-len", str(a.seq_len),
           "--steps", str(a.steps), "--warmup", str(a.warmup_steps), "--layouts", spec, "--device", device,
           "--precision", precision, "--threads", str(threads), "--profile-ops",
           "--peak-tflops", str(peak / 1e12 / a.ranks)]
    if a.ranks > 1:
        cmd = [a.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(a.ranks)] + cmd
    log = os.path.join(a.work, "gemm_share.log")
    run_measured("gemm share", cmd, log, device == "cuda")
    text = open(log).read()
    match = re.search(r"GEMMs \(matmul_\*\): ([\d.]+) GFLOP/s per rank(?: = ([\d.]+)% of)?", text)
    if not match:
        raise Failure(f"tessera-bench-training --profile-ops printed no GEMM line; see {log}")
    return {"gflops_per_rank": float(match.group(1)),
            "share_of_peak": float(match.group(2)) / 100 if match.group(2) else None, "log": log}


# ---------------------------------------------------------------------------------------------
# Set-up: device, data, initialisation.

def detect_gpus():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def gpu_peak(name):
    for key, peak in GPU_PEAKS:
        if key in name:
            return peak
    return 0.0


def prepare_data(a, work):
    if a.data:
        return a.data, a.val_data or a.data
    prefix = os.path.join(work, "data", "shakespeare")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    if not os.path.exists(prefix + "_train.bin"):
        subprocess.run([os.path.join(a.build, "tessera-prepare-data"), "--out", prefix,
                        os.path.join(REPO, "data", "tinyshakespeare.txt")], check=True, stdout=subprocess.DEVNULL)
    return prefix + "_train.bin", prefix + "_val.bin"


def export_init(a, work, data):
    if a.init:
        return a.init
    init = os.path.join(work, "init")
    shutil.rmtree(init, ignore_errors=True)
    subprocess.run([os.path.join(a.build, "tessera-train"), "--model", a.model, "--steps", "0", "--export", init,
                    "--data", data, "--batch-size", "1", "--seq-len", "8", "--sample-tokens", "0",
                    "--device", "cpu", "--precision", "f32", "--threads", "1", "--seed", str(a.seed), "--timeout", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return init


def model_flops(init, T):
    with open(os.path.join(init, "config.json")) as f:
        c = json.load(f)
    L, C, V, maxT = c["n_layer"], c["n_embd"], c["vocab_size"], c["n_positions"]
    N = V * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C
    return c, N, 6 * (N - maxT * C) + 12 * L * C * T, 6 * N + 6 * L * C * T


# ---------------------------------------------------------------------------------------------
# The table.

def summarize(name, r, a, peak_per_device, flops_palm, flops_llmc):
    timed = r["step_ms"][a.warmup_steps:]
    if len(timed) < a.steps:
        raise Failure(f"{name} ran {len(r['step_ms'])} steps, expected {a.warmup_steps + a.steps}")
    ms = statistics.median(timed)
    tokens_per_s = a.batch_size * a.seq_len / (ms / 1e3)
    peak = peak_per_device * r["devices"]
    return {"peer": name, "setup": r["setup"], "ms_per_step": ms, "tokens_per_s": tokens_per_s,
            "peak_memory_bytes": r["peak_memory_bytes"], "peak_flops": peak,
            "mfu_palm": flops_palm * tokens_per_s / peak if peak > 0 else None,
            "mfu_llmc": flops_llmc * tokens_per_s / peak if peak > 0 else None,
            "first_loss": r["losses"][0], "last_loss": r["losses"][-1], "step_ms": r["step_ms"], "losses": r["losses"]}


def combine(per_round, tessera_per_round, a, flops_palm, flops_llmc):
    """One row from a peer's rounds: the median step over all rounds' timed steps, the largest peak
    memory, and the median of the per-round speed ratios to tessera."""
    first = per_round[0]
    timed = [ms for r in per_round for ms in r["step_ms"][a.warmup_steps:]]
    ms = statistics.median(timed)
    tokens_per_s = a.batch_size * a.seq_len / (ms / 1e3)
    peak = first["peak_flops"]
    ratios = [r["tokens_per_s"] / t["tokens_per_s"] for r, t in zip(per_round, tessera_per_round) if t]
    memory = [r["peak_memory_bytes"] for r in per_round if r["peak_memory_bytes"] is not None]
    return dict(first, ms_per_step=ms, tokens_per_s=tokens_per_s,
                peak_memory_bytes=max(memory) if memory else None,
                mfu_palm=flops_palm * tokens_per_s / peak if peak else None,
                mfu_llmc=flops_llmc * tokens_per_s / peak if peak else None,
                vs_tessera=statistics.median(ratios) if ratios else None,
                rounds=[{k: r[k] for k in ("ms_per_step", "tokens_per_s", "peak_memory_bytes")} for r in per_round],
                step_ms=[r["step_ms"] for r in per_round], losses=[r["losses"] for r in per_round])


def fmt_mem(b):
    return "n/a" if b is None else f"{b / 2**20:,.0f} MiB"


def fmt_pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown_table(rows):
    lines = ["| peer | ms/step | tokens/s | vs tessera | peak memory | MFU 6N+12LCT | MFU 6N+6LCT | loss step 1 | loss last |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{r['vs_tessera']:.2f}x" if r["vs_tessera"] is not None else "n/a"
        lines.append(f"| {r['peer']} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {ratio} | "
                     f"{fmt_mem(r['peak_memory_bytes'])} | {fmt_pct(r['mfu_palm'])} | {fmt_pct(r['mfu_llmc'])} | "
                     f"{r['first_loss']:.6f} | {r['last_loss']:.4f} |")
    return "\n".join(lines)


def machine_description(device, gpus):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{platform.node()}: {os.cpu_count()} CPUs ({cpu})"
    if gpus:
        text += f", {len(gpus)} x {gpus[0]}"
    return text


def git_commit():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the top of this file.")
    p.add_argument("--build", default=os.path.join(REPO, "build"), help="tessera's build directory")
    p.add_argument("--model", default="tiny", help="tessera-train preset to initialise (tiny, gpt2, ...)")
    p.add_argument("--init", help="use this Hugging Face GPT-2 directory instead of exporting --model")
    p.add_argument("--data", help="training shards (default: data/tinyshakespeare.txt tokenized into --work)")
    p.add_argument("--val-data", help="validation shards for llm.c (default: the training shards)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (the global batch)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "f32", "bf16"],
                   help="auto: bf16 on a GPU, f32 on the CPU")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per peer in all (tessera's ranks share them); 0: each peer's default")
    p.add_argument("--ranks", type=int, default=1, help="tessera's processes (mpirun)")
    p.add_argument("--layout", default="", help="tessera's layout over --ranks, e.g. tp=2 or pp=2,mb=4 (dp: the rest)")
    p.add_argument("--peers", default="tessera,eager,compile", help="comma-separated: tessera, eager, compile, llmc")
    p.add_argument("--llmc", help="llm.c's train_gpt2cu binary (adds the llm.c peer)")
    p.add_argument("--python", default=os.environ.get("TESSERA_HF_PYTHON") or sys.executable,
                   help="Python with torch for the PyTorch peers (default: $TESSERA_HF_PYTHON or this one)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every peer this many times in turn (ratios: the median of the per-round ratios)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="peak TFLOP/s of one device for MFU (CPU: of all the cores used; GPU default: the card's dense bf16)")
    p.add_argument("--cpu-peak", action="store_true",
                   help="CPU: measure the peak of --threads cores with tessera-cpu-peak (instead of --peak-tflops)")
    p.add_argument("--gemm-share", action="store_true",
                   help="CPU: also print the share of the peak tessera's GEMMs reach (implies --cpu-peak "
                        "without --peak-tflops)")
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--lr-warmup", type=int, default=20, help="learning-rate warm-up steps")
    p.add_argument("--seed", type=int, default=1337, help="tessera's initialisation seed")
    p.add_argument("--work", default=os.path.join(REPO, "out", "peers"), help="folder for logs, data, init")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--check-loss", type=float, default=0.0,
                   help="fail when a peer's first-step loss differs from tessera's by more than this (relative)")
    a = p.parse_args(argv[1:])
    a.peers = [x.strip() for x in a.peers.split(",") if x.strip()]
    if a.llmc and "llmc" not in a.peers:
        a.peers.append("llmc")
    bad = [x for x in a.peers if x not in PEER_NAMES]
    if bad or not a.peers:
        raise Failure(f"--peers: unknown {bad}; choose from {', '.join(PEER_NAMES)}")
    if "llmc" in a.peers and not a.llmc:
        raise Failure("the llm.c peer needs --llmc PATH (a train_gpt2cu you built)")
    if min(a.batch_size, a.seq_len, a.steps, a.ranks, a.rounds) < 1 or a.warmup_steps < 0 or a.threads < 0:
        raise Failure("--batch-size, --seq-len, --steps, --ranks and --rounds must be positive; --warmup-steps, "
                      "--threads not negative")
    return a


def run(a):
    gpus = detect_gpus()
    a.gpus = len(gpus)
    device = a.device if a.device != "auto" else ("cuda" if gpus else "cpu")
    if device == "cuda" and not gpus:
        raise Failure("--device cuda but nvidia-smi lists no GPU")
    precision = a.precision if a.precision != "auto" else ("bf16" if device == "cuda" else "f32")
    if "llmc" in a.peers and device != "cuda":
        raise Failure("llm.c's train_gpt2cu runs on a GPU only")
    torch_peers = [p for p in a.peers if p in ("eager", "compile")]
    if torch_peers and subprocess.run([a.python, "-c", "import torch, numpy"], capture_output=True).returncode != 0:
        raise Failure(f"{a.python} cannot import torch and numpy, which the {' and '.join(torch_peers)} peers need "
                      f"(pass --python, or --peers tessera)", SKIP)
    os.makedirs(a.work, exist_ok=True)
    data, val_data = prepare_data(a, a.work)
    init = export_init(a, a.work, data)
    config, n_params, flops_palm, flops_llmc = model_flops(init, a.seq_len)
    peak = a.peak_tflops * 1e12 if a.peak_tflops > 0 else (gpu_peak(gpus[0]) if device == "cuda" else 0.0)
    peak_source = "--peak-tflops" if a.peak_tflops > 0 else "the card's dense bf16 peak"
    if device == "cpu" and not a.peak_tflops > 0 and (a.cpu_peak or a.gemm_share):
        peak, threads = measure_cpu_peak(a)
        peak_source = f"measured by tessera-cpu-peak on {threads} threads"
    load_before = os.getloadavg()

    # Each round runs every peer once, in turn; with several rounds a peer's speed relative to
    # tessera is the median of its per-round ratios, which holds when the machine's load drifts.
    rounds = []
    for r in range(a.rounds):
        if a.rounds > 1:
            print(f"--- round {r + 1} of {a.rounds}", flush=True)
        results = {}
        for peer in a.peers:
            if peer == "tessera":
                results[peer] = tessera_peer(a, a.work, init, data, device, precision)
            elif peer in ("eager", "compile"):
                results[peer] = torch_peer(a, a.work, init, data, device, precision, peer == "compile")
            else:
                results[peer] = llmc_peer(a, a.work, init, data, val_data, precision)
        rounds.append({p: summarize(PEER_NAMES[p], results[p], a, peak, flops_palm, flops_llmc) for p in a.peers})
    rows = [combine([round_[p] for round_ in rounds], [round_.get("tessera") for round_ in rounds], a, flops_palm,
                    flops_llmc) for p in a.peers]
    gemm = gemm_share(a, device, precision, peak) if a.gemm_share and device == "cpu" else None
    load_after = os.getloadavg()

    header = [
        f"model: L={config['n_layer']} C={config['n_embd']} heads={config['n_head']} V={config['vocab_size']} "
        f"({n_params / 1e6:.2f}M parameters), from {init}",
        f"batch: {a.batch_size} x {a.seq_len} tokens per step; {a.steps} timed steps (median) after {a.warmup_steps}"
        f"{f', {a.rounds} rounds (ratios: median of the rounds)' if a.rounds > 1 else ''}; "
        f"{device}, {precision}; data {data}",
        f"MFU peak: {peak / 1e12:g} TFLOP/s per device ({peak_source})" if peak > 0 else
        "MFU peak: unknown (CPU: pass --peak-tflops or --cpu-peak), MFU n/a",
        f"FLOPs per token: {flops_palm:.4g} (6N'+12LCT, PaLM) and {flops_llmc:.4g} (6N+6LCT, llm.c)",
        f"commit {git_commit()}; machine {machine_description(device, gpus)}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
    ]
    if gemm:
        share = f" = {100 * gemm['share_of_peak']:.1f}% of the peak" if gemm["share_of_peak"] is not None else ""
        header.append(f"tessera's GEMMs: {gemm['gflops_per_rank']:.1f} GFLOP/s per rank{share} "
                      f"(tessera-bench-training --profile-ops, same model, batch and layout; {gemm['log']})")
    print()
    for line in header:
        print(line)
    for r in rows:
        print(f"  {r['peer']}: {r['setup']}")
    print()
    print(markdown_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header, "device": device, "precision": precision, "batch_size": a.batch_size,
                       "seq_len": a.seq_len, "rows": rows, "peak_flops": peak, "gemm": gemm}, f, indent=1)

    tessera = next((r for r in rows if r["peer"] == "tessera"), None)
    if a.check_loss > 0 and tessera:
        worst = 0.0
        for r in rows:
            if r is tessera or r["peer"] == "llm.c":  # llm.c shuffles its batches
                continue
            rel = abs(r["first_loss"] - tessera["first_loss"]) / max(abs(tessera["first_loss"]), 1e-12)
            worst = max(worst, rel)
            if not rel <= a.check_loss:
                raise Failure(f"{r['peer']}'s first-step loss {r['first_loss']:.7f} differs from tessera's "
                              f"{tessera['first_loss']:.7f} by {rel:.2e} relative (> {a.check_loss:g}): "
                              f"not the same model, initialisation or data")
        print(f"\nfirst-step losses agree with tessera's within {worst:.1e} relative (--check-loss {a.check_loss:g})")
    return 0


def main(argv):
    try:
        return run(parse_args(argv))
    except Failure as e:
        print(f"compare_peers: {e}", file=sys.stderr)
        return e.code
    except subprocess.CalledProcessError as e:
        print(f"compare_peers: {' '.join(e.cmd)} failed with exit code {e.returncode}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as e:
        print(f"compare_peers: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
