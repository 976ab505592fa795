#!/usr/bin/env python3
"""Effective training time under failures: the tiny model on 4 ranks (two "nodes" of two ranks) under
tessera-launch, with a failure injected from outside about every 30 s, cycling through a killed rank
(SIGKILL), a frozen rank (SIGSTOP) and a lost node (both of its ranks killed and its node-local
directory removed), until the run has lasted --seconds; then SIGTERM ends it.

    benchmarks/ettr.py --build build --out out/ettr/after --seconds 240
    benchmarks/ettr.py --build /tmp/main/build --out out/ettr/before --legacy --timeout 60

--legacy runs a build without heartbeats, learned deadlines or the local tier (main before this work):
ranks are found through /proc, the freeze is caught by --timeout, and nothing is written to a local
tier. Reports the effective training time (seconds of steps that advanced training over wall time),
and for each failure the time lost, split into detection (injection to the end of the attempt),
restart (end of the attempt to the resumed run's first step) and recomputation (steps redone times
the median step time), next to the planner's failure model (src/plan/failures.cpp) for the same rates.
Writes the raw logs and a JSON summary to --out.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def train_ranks(ckpt):
    """{rank: pid} of the tessera-train processes of this run (through /proc: works for any build)."""
    ranks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            if not cmd or not cmd[0].endswith(b"tessera-train") or ckpt.encode() not in b" ".join(cmd):
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open("/proc/%s/stat" % pid) as f:
                if f.read().split()[2] in ("Z", "T"):
                    continue  # dead or already frozen
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(pid)
        except (OSError, KeyError, ValueError):
            pass
    return ranks


class Stamper:
    """Follows a JSON-lines log and notes when each record of the given kinds first appeared: the
    times of restarts and resumes for builds whose records carry no time of their own."""

    def __init__(self, path, kinds):
        self.path, self.kinds, self.offset, self.stamps, self.steps = path, kinds, 0, {k: [] for k in kinds}, 0

    def poll(self):
        try:
            with open(self.path) as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind("\n") + 1  # whole lines only
        self.offset += len(chunk[:end].encode())
        now = time.time()
        for line in chunk[:end].splitlines():
            try:
                kind = json.loads(line).get("kind")
            except ValueError:
                continue
            if kind == "train":
                self.steps += 1
            if kind in self.stamps:
                self.stamps[kind].append(now)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=240)
    p.add_argument("--every", type=float, default=30, help="mean seconds between failures")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--legacy", action="store_true", help="a build without heartbeats, learned deadlines, local tier")
    p.add_argument("--timeout", type=float, default=0, help="--timeout for the ranks (0: not given)")
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--local-every", type=int, default=4)
    args = p.parse_args()

    build = os.path.abspath(args.build)
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    ckpt, local, fail = os.path.join(out, "ckpt"), os.path.join(out, "local"), os.path.join(out, "ckpt", "failures")
    data = os.path.join(out, "corpus")
    subprocess.run([os.path.join(build, "tessera-prepare-data"), "--out", data, os.path.join(ROOT, "data", "tinyshakespeare.txt")],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", TESSERA_TEST_NODES="nodeA nodeA nodeB nodeB",
               TESSERA_TEST_SPARES=" ".join("node" + c for c in "CDEFGHIJKLMNOPQRSTUVWXYZ"))
    train = [os.path.join(build, "tessera-train"), "--model", "tiny", "--data", data + "_train.bin", "--tp", "2",
             "--batch-size", "4", "--seq-len", "64", "--steps", "100000", "--eval-every", "0", "--sample-tokens", "0",
             "--threads", "1", "--seed", "3", "--checkpoint-dir", ckpt, "--checkpoint-every", str(args.checkpoint_every),
             "--keep", "2", "--log", os.path.join(out, "train.jsonl")]
    if args.timeout > 0:
        train += ["--timeout", str(args.timeout)]
    if not args.legacy:
        train += ["--local-checkpoint-dir", local, "--local-checkpoint-every", str(args.local_every)]
    launch = [os.path.join(build, "tessera-launch"), "--max-restarts", "100", "--restart-delay", "0", "--checkpoint-dir", ckpt,
              "--failure-dir", fail, "--log", os.path.join(out, "launch.jsonl")]
    if not args.legacy:
        launch += ["--exclude-failed-hosts"]
    command = launch + ["--", "mpirun", "--oversubscribe", "--bind-to", "none", "-np", "4", "sh",
                        os.path.join(ROOT, "tests", "support", "fake_nodes.sh")] + train
    rng = random.Random(args.seed)
    kinds = ["kill", "freeze", "node"]
    injections = []
    t0 = time.time()
    launch_log = Stamper(os.path.join(out, "launch.jsonl"), ["restart"])
    train_log = Stamper(os.path.join(out, "train.jsonl"), ["resume"])
    with open(os.path.join(out, "job.out"), "w") as job_out:
        job = subprocess.Popen(command, env=env, stdout=job_out, stderr=subprocess.STDOUT)
        next_at = t0 + rng.uniform(0.66, 1.33) * args.every
        while time.time() - t0 < args.seconds and job.poll() is None:
            time.sleep(0.2)
            train_log.poll()  # first: a step logged before the attempt's end counts before the reset below
            restarts = len(launch_log.stamps["restart"])
            launch_log.poll()
            if len(launch_log.stamps["restart"]) > restarts:
                train_log.steps = 0  # steps of the attempt now running only
            if time.time() < next_at:
                continue
            ranks = train_ranks(ckpt)
            if len(ranks) < 4 or train_log.steps < 5:
                continue  # between attempts, or starting: wait for a running job
            kind = kinds[len(injections) % len(kinds)]
            victim = rng.choice(sorted(ranks))
            at = time.time()
            if kind == "kill":
                os.kill(ranks[victim], signal.SIGKILL)
            elif kind == "freeze":
                os.kill(ranks[victim], signal.SIGSTOP)
            else:  # the node of the victim: both of its ranks, and its local directory
                node = [r for r in ranks if r // 2 == victim // 2]
                beat = os.path.join(fail, "heartbeat-rank-%d.json" % victim)
                host = None
                try:
                    with open(beat) as f:
                        host = json.load(f).get("host")
                except (OSError, ValueError):
                    pass
                for r in node:
                    os.kill(ranks[r], signal.SIGKILL)
                if host:
                    shutil.rmtree(os.path.join(local, host), ignore_errors=True)
            injections.append({"kind": kind, "rank": victim, "unix": at})
            print("ettr: %.1f s: %s rank %d" % (at - t0, kind, victim), flush=True)
            next_at = time.time() + rng.uniform(0.66, 1.33) * args.every
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)  # save and stop
        try:
            job.wait(timeout=300)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()
    t_end = time.time()
    report(out, injections, t0, t_end, args, launch_log.stamps["restart"], train_log.stamps["resume"])


def report(out, injections, t0, t_end, args, restart_seen, resume_seen):
    """restart_seen, resume_seen: when each restart and resume record appeared (within 0.2 s), the
    times used where a record has none (builds before this work)."""
    train = read_jsonl(os.path.join(out, "train.jsonl"))
    launch = read_jsonl(os.path.join(out, "launch.jsonl"))
    restarts = [r for r in launch if r.get("kind") == "restart"]
    for r, seen in zip(restarts, restart_seen):
        r.setdefault("ended_unix", seen)
    resume_records = [r for r in train if r.get("kind") == "resume"]
    for r, seen in zip(resume_records, resume_seen):
        r.setdefault("unix", seen)
    # The steps that led to the end, and the median step time; the attempts in the order of the log,
    # each after the first opened by its resume record: (resume or None, last step trained).
    kept, segments = {}, [[None, -1]]
    for r in train:
        if r.get("kind") == "resume":
            segments.append([r, -1])
            for s in [s for s in kept if s >= r["step"]]:
                del kept[s]
        elif r.get("kind") == "train":
            kept[r["step"]] = r
            segments[-1][1] = r["step"]
    step_s = statistics.median(r["ms"] for r in kept.values()) / 1e3 if kept else 0
    useful = sum(r["ms"] for r in kept.values()) / 1e3
    wall = t_end - t0
    rows = []
    for inj in injections:
        # The attempt it ended: the first restart record that ended after it; the attempt that went
        # on: the first resume after that.
        rec = next((r for r in restarts if r.get("ended_unix", 0) >= inj["unix"]), None)
        if rec is None:
            continue
        n = next((i for i in range(1, len(segments)) if segments[i][0].get("unix", 0) >= rec["ended_unix"]), None)
        resume = segments[n][0] if n is not None else None
        detection = rec["ended_unix"] - inj["unix"]
        restart = resume["unix"] - rec["ended_unix"] if resume else None
        redone = max(0, segments[n - 1][1] + 1 - resume["step"]) if resume else None
        recompute = redone * step_s if redone is not None else None
        rows.append({"kind": inj["kind"], "detection_s": detection, "restart_s": restart, "redone_steps": redone,
                     "recompute_s": recompute, "tier": resume.get("tier", "durable") if resume else None})
    summary = {"wall_s": wall, "useful_s": useful, "ettr": useful / wall if wall else 0, "steps": len(kept),
               "step_s": step_s, "failures": rows, "injections": injections,
               "legacy": args.legacy, "timeout": args.timeout, "checkpoint_every": args.checkpoint_every,
               "local_every": 0 if args.legacy else args.local_every}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("ettr: %s: %.1f s wall, %.1f s of steps that advanced training (%d steps of %.0f ms): effective %.1f%%" % (
        out, wall, useful, len(kept), step_s * 1e3, 100 * summary["ettr"]))
    print("| failure | detection | restart | recomputation | lost | resumed from |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        f = lambda v: "—" if v is None else "%.1f s" % v
        lost = sum(v for v in (r["detection_s"], r["restart_s"], r["recompute_s"]) if v is not None)
        print("| %s | %s | %s | %s (%s steps) | %.1f s | %s tier |" % (r["kind"], f(r["detection_s"]), f(r["restart_s"]),
                                                                     f(r["recompute_s"]), r["redone_steps"], lost, r["tier"]))
    # The planner's model (src/plan/failures.cpp): per failure the restart R plus half a checkpoint
    # interval (tau + delta) is lost; the effective ratio is tau/(tau+delta) * (1 - lost/M).
    if rows:
        mtbf = wall / len(injections)
        interval = (args.checkpoint_every if args.legacy else args.local_every) * step_s
        detect_restart = statistics.mean((r["detection_s"] or 0) + (r["restart_s"] or 0) for r in rows)
        lost = detect_restart + 0.5 * interval
        print("planner's failure model at these rates: M = %.1f s between failures, R = %.1f s (measured detection + "
              "restart), tau = %.1f s between saves: %.1f s lost per failure, effective %.1f%%" % (
                  mtbf, detect_restart, interval, lost, 100 * max(0.0, 1 - lost / mtbf)))


if __name__ == "__main__":
    sys.exit(main())
