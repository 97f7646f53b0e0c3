#!/usr/bin/env python3
"""mpi_scaling.py: the scaling model of `mpirun -n P tq sweep` (README "Scaling out").

Measures here (1) the CPU cost of one work unit, one (layer, kv head, configuration), against the token count on
70B-shaped slices (head dim 128, 8 query heads per kv head), fitted as a*T + b*T^2 (the round trip is linear in T,
the attention metrics quadratic); (2) what rank 0 sends and receives per unit (TQ_MPI_STATS=1: message sizes,
dispatch time); (3) a sweep big enough to matter in one process and under `mpirun -n 2`, alternated, with
--threads 1 per rank, to check the model's -n 2 prediction against the measurement. Then predicts the wall time of
a 70B-shaped sweep (80 layers x 8 kv heads x 32k tokens x 100 configurations) on 1, 8, 64 and 512 ranks and writes
results/mpi_scaling/ (README.md with the assumptions, scaling.csv, measurements.json, scaling.png).

usage: python3 eval/mpi_scaling.py [--tq ./tq] [--out results/mpi_scaling] [--reps 2] [--quick]
"""
import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-x", "TQ_MPI_STATS"]
MIX = ["--methods", "turbo-mse,turbo-prod,kivi,polar", "--bits", "3"]  # a configuration mix, cost averaged over it
G, D = 8, 128  # 70B: 64 query heads over 8 kv heads, head dim 128


def run(cmd, env=None):
    """wall seconds, child CPU seconds (user + sys) and stderr of one command; fails loudly"""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit(f"mpi_scaling: {' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p.stderr


def unit_cost(tq, tokens, tmp):
    """CPU seconds per unit at each token count: 2 kv heads x 4 configurations, minus the same run at 16 tokens"""
    def cpu(T):
        args = [tq, "sweep", "--synthetic", "gaussian", "--layers", "1", "--heads", "2", "--q-heads", str(2 * G),
                "--dim", str(D), "--tokens", str(T), "--threads", "1", *MIX, "-o", os.path.join(tmp, "c.csv")]
        return run(args)[1]
    base = cpu(16)
    n_units = 2 * 4
    return {T: max(cpu(T) - base, 1e-9) / n_units for T in tokens}, base


def fit(costs):
    """least squares c(T) = a*T + b*T^2"""
    T = np.array(sorted(costs), float)
    y = np.array([costs[t] for t in sorted(costs)])
    A = np.stack([T, T * T], 1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(a), float(b)


STATS = re.compile(r"tq: mpi: (\d+) units over (\d+) ranks, rank 0 computed (\d+); (\d+) result messages of (\d+) "
                   r"bytes, (\d+) work messages of (\d+) bytes; dispatch ([0-9.]+) s")


def parse_stats(err):
    m = STATS.search(err)
    if not m:
        sys.exit("mpi_scaling: no 'tq: mpi:' line (is tq built with MPI?)")
    k = ["units", "ranks", "rank0_units", "result_msgs", "result_bytes", "work_msgs", "work_bytes", "dispatch_s"]
    return {n: (float(v) if n == "dispatch_s" else int(v)) for n, v in zip(k, m.groups())}


def predict(n_units, c_unit, startup, ranks, msg_s, read_s):
    """wall seconds of n_units equal units on `ranks` ranks (rank 0 computes too; dynamic queue, so the last round
    is the only imbalance: ceil(N/P) units on the busiest rank), each unit paying its compute, its slice read and a
    result message; rank 0's dispatcher must also keep up: N messages of msg_s each, serially"""
    per_rank = math.ceil(n_units / ranks) * (c_unit + read_s + (msg_s if ranks > 1 else 0))
    dispatcher = n_units * msg_s if ranks > 1 else 0
    return startup + max(per_rank, dispatcher)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tq", default=os.path.join(ROOT, "tq"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "mpi_scaling"))
    ap.add_argument("--reps", type=int, default=3, help="alternated single / -n 2 repetitions of the big sweep")
    ap.add_argument("--quick", action="store_true", help="smaller sweeps (a smoke test, not the committed numbers)")
    ap.add_argument("--render", action="store_true", help="only rewrite README.md and the plot from --out's "
                    "measurements.json and scaling.csv")
    a = ap.parse_args()
    if a.render:
        with open(os.path.join(a.out, "measurements.json")) as f:
            meas = json.load(f)
        rows = meas["prediction"]
        plot(a.out, rows, meas)
        write_readme(a.out, meas, rows)
        return
    tq = os.path.abspath(a.tq)
    os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mpi_scaling.")
    dump = os.path.join(ROOT, "datasets", "smollm2-135m.h5")
    load = os.getloadavg()

    # (1) per-unit cost against tokens
    tokens = [256, 512, 1024] if a.quick else [512, 1024, 2048]
    costs, base_cpu = unit_cost(tq, tokens, tmp)
    ca, cb = fit(costs)
    print("unit CPU s:", {t: round(c, 4) for t, c in costs.items()}, f"fit a={ca:.3e} b={cb:.3e}")

    # (2)+(3) both bundled dumps (SmolLM2: 30 layers x 3 kv heads x 320 tokens, d = 64; Gemma 3: 18 layers x 1 kv
    # head x 384 tokens, d = 256, sliding windows) under a configuration mix with both rotations: ~30 s of one core
    # and units of different sizes, so launch and MPI_Init weigh what they would in a real job (about 1%) and the
    # queue's largest-first order matters
    gemma = os.path.join(ROOT, "datasets", "gemma3-270m.h5")
    dumps = [dump, gemma]
    opts = ["--threads", "1", "--methods", "turbo-mse,turbo-prod,kivi,polar", "--bits", "2-4", "--rotation",
            "dense,hadamard"] + (["--layers", "0-5"] if a.quick else [])
    sweep = [tq, "sweep", *dumps, *opts, "-o", os.path.join(tmp, "s.csv")]
    tiny = [tq, "sweep", dump, "--layers", "0", "--heads", "0", "--tokens", "8", "--threads", "1", "--methods",
            "kivi", "--bits", "2", "-o", os.path.join(tmp, "t.csv")]
    env = dict(os.environ, TQ_MPI_STATS="1")
    s1 = run(tiny)[0]                                  # one process's fixed cost: start, open, write
    s2, _, err = run(MPIRUN + ["-n", "2"] + tiny, env)  # the same under mpirun: launch, MPI_Init, finalise
    # Baselines and calibration, alternated: one process (plain, and under `mpirun -n 1`, the same launch path as
    # the ranks), tq's MPI run at -n 2, and a static split without tq's MPI code (two independent processes under
    # `mpirun -n 2`, one dump each): the CPU share two mpirun-launched processes get on this machine
    # now, which the model takes as a condition of the machine.
    # the static split: rank r sweeps dump r alone (the two take about the same time in one process)
    half = (f"exec env -u OMPI_COMM_WORLD_SIZE {tq} sweep $([ $OMPI_COMM_WORLD_RANK = 0 ] && echo {dump} || echo "
            f"{gemma}) " + " ".join(opts) + f" -o {tmp}/h$OMPI_COMM_WORLD_RANK.csv")
    static = MPIRUN + ["-n", "2", "bash", "-c", half]
    w1, wn1, w2, ws, cpu1, cpu2, cpus, share1, stats = [], [], [], [], [], [], [], [], None
    for _ in range(a.reps):
        w, c, _ = run(sweep)
        w1.append(w)
        cpu1.append(c)
        share1.append(c / w)
        wn1.append(run(MPIRUN + ["-n", "1"] + sweep)[0])
        w, c, err = run(MPIRUN + ["-n", "2"] + sweep, env)
        w2.append(w)
        cpu2.append(c)
        stats = parse_stats(err)
        w, c, _ = run(static)
        ws.append(w)
        cpus.append(c)
    n = stats["units"]
    W1, W2, Wn1 = float(np.median(w1)), float(np.median(w2)), float(np.median(wn1))
    c_cpu = float(np.median(cpu1)) / n      # CPU seconds per unit, from the single process
    # the CPU fraction each of the two static processes got, launch excluded
    shares = [c / (2 * max(w - s2, 1e-9)) for w, c in zip(ws, cpus)]
    s_pair = float(np.median(shares))
    msg_s = 20e-6                           # a result and a work message over shared memory, sent without blocking
    # each rank runs at the share two processes get on this machine (a condition of the machine, measured without
    # MPI); the model then adds what MPI costs: launch, the messages, the last round's imbalance
    pred2 = predict(n, c_cpu / s_pair, s2, 2, msg_s, 0.0)
    err_pct = 100.0 * (pred2 - W2) / W2
    print(f"sweep: {n} units; one process {W1:.2f} s (runs {w1}), mpirun -n 1 {Wn1:.2f} s (runs {wn1}), -n 2 "
          f"{W2:.2f} s (runs {w2}), static pair {ws}; speed-up {W1 / W2:.2f}x (vs -n 1: {Wn1 / W2:.2f}x); "
          f"share {s_pair:.2f}; model -n 2 {pred2:.2f} s ({err_pct:+.1f}%)")

    # (4) the 70B-shaped sweep
    T70, N70 = 32768, 80 * 8 * 100
    c70 = ca * T70 + cb * T70 * T70
    slice_bytes = (2 + G) * T70 * D * 2          # keys, values and 8 query heads of one kv head, float16 in the dump
    read_s = slice_bytes / 1e9                   # assumed 1 GB/s per rank from the file system, no reuse
    msg70 = 5e-6 * 2 + (stats["result_bytes"] + stats["work_bytes"]) / 10e9  # inter-node: 5 us, 10 GB/s
    rows = []
    for P in (1, 8, 64, 512):
        w = predict(N70, c70, s2 if P > 1 else s1, P, msg70, read_s)
        rows.append({"ranks": P, "wall_s": w, "wall_h": w / 3600, "speedup": None, "efficiency": None})
    for r in rows:
        r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
        r["efficiency"] = r["speedup"] / r["ranks"]
    for r in rows:
        print(f"70B: {r['ranks']:4d} ranks: {r['wall_h']:9.1f} h  speed-up {r['speedup']:6.1f}")

    meas = {"loadavg_at_start": load, "loadavg_at_end": os.getloadavg(), "cpus": os.cpu_count(), "unit_cpu_s": costs, "unit_fit": {"a": ca, "b": cb},
            "startup_cpu_s": base_cpu, "single_wall_s": w1, "single_cpu_s": cpu1, "n2_wall_s": w2,
            "tiny_single_s": s1, "tiny_n2_s": s2, "stats_n2": stats, "units": n, "unit_cpu_s_sweep": c_cpu,
            "n2_cpu_s": cpu2, "share_single": share1, "static_wall_s": ws, "static_cpu_s": cpus,
            "share_pair": shares, "share_pair_median": s_pair, "n1_wall_s": wn1, "speedup_vs_n1": Wn1 / W2,
            "pred_n2_s": pred2, "pred_n2_err_pct": err_pct, "speedup_n2": W1 / W2, "c70_s": c70,
            "read70_s": read_s, "msg70_s": msg70, "sweep": sweep[1:], "prediction": rows}
    with open(os.path.join(a.out, "measurements.json"), "w") as f:
        json.dump(meas, f, indent=1, default=str)
    with open(os.path.join(a.out, "scaling.csv"), "w") as f:
        f.write("ranks,wall_s,wall_h,speedup,efficiency\n")
        for r in rows:
            f.write(f"{r['ranks']},{r['wall_s']:.6g},{r['wall_h']:.6g},{r['speedup']:.6g},{r['efficiency']:.6g}\n")
    plot(a.out, rows, meas)
    write_readme(a.out, meas, rows)


def plot(out, rows, m):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    P = [r["ranks"] for r in rows]
    ax[0].loglog(P, [r["wall_h"] for r in rows], "o-", label="model")
    ax[0].loglog(P, [rows[0]["wall_h"] / p for p in P], "--", color="gray", label="ideal")
    ax[0].set_xlabel("MPI ranks")
    ax[0].set_ylabel("wall time (hours)")
    ax[0].set_title("70B-shaped sweep: 80 layers x 8 kv heads\nx 32k tokens x 100 configurations", fontsize=9)
    ax[0].legend()
    T = np.array(sorted(m["unit_cpu_s"], key=float), float)
    ax[1].loglog(T, [m["unit_cpu_s"][t] for t in sorted(m["unit_cpu_s"], key=float)], "o", label="measured")
    TT = np.geomspace(T[0], 32768, 50)
    ax[1].loglog(TT, m["unit_fit"]["a"] * TT + m["unit_fit"]["b"] * TT * TT, "-", label="a T + b T^2")
    ax[1].set_xlabel("tokens")
    ax[1].set_ylabel("CPU seconds per unit")
    ax[1].set_title("one (layer, kv head, configuration), G=8, d=128", fontsize=9)
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling.png"), dpi=110)


def write_readme(out, m, rows):
    st = m["stats_n2"]
    lines = [
        "# MPI scaling model (eval/mpi_scaling.py)",
        "",
        "Written by `python3 eval/mpi_scaling.py`; do not edit by hand.",
        "",
        "## Measured here",
        "",
        f"Machine: {m['cpus']} cores shared with other jobs (load average {m['loadavg_at_start'][0]:.1f} at the "
        f"start{', %.1f at the end' % m['loadavg_at_end'][0] if m.get('loadavg_at_end') else ''}), so wall times "
        "are noisy; single-process and `-n 2` runs alternate and the medians are compared; CPU time (user + sys of "
        "every process) does not depend on the load and shows what the ranks cost.",
        "",
        "Per-unit CPU cost, one (layer, kv head, configuration) at head dim 128 and 8 query heads per kv head, mean "
        "over turbo-mse, turbo-prod, kivi and polar at 3 bits (synthetic gaussian input, `--threads 1`):",
        "",
        "| tokens | CPU s per unit |",
        "|---:|---:|",
    ]
    lines += [f"| {t} | {c:.4g} |" for t, c in sorted(m["unit_cpu_s"].items(), key=lambda kv: float(kv[0]))]
    lines += [
        "",
        f"Fit c(T) = a T + b T^2: a = {m['unit_fit']['a']:.3e} s, b = {m['unit_fit']['b']:.3e} s "
        f"(32k tokens: {m['c70_s']:.0f} s per unit; the attention metrics' G T^2 d dominate).",
        "",
        f"Messages (`TQ_MPI_STATS=1`, `-n 2`): {st['result_msgs']} result messages of {st['result_bytes']} bytes "
        f"and {st['work_msgs']} work messages of {st['work_bytes']} bytes for {st['units']} units; rank 0 computed "
        f"{st['rank0_units']} of them itself.",
        "",
        f"Speed-up check: `tq {' '.join(os.path.basename(x) if x.startswith('/') else x for x in m['sweep'])}` "
        f"({m['units']} units), `--threads 1` per rank:",
        "",
        "| run | wall s (each repetition) | median | CPU s, user + sys (median) |",
        "|---|---|---:|---:|",
        f"| one process | {', '.join(f'{w:.2f}' for w in m['single_wall_s'])} | "
        f"{float(np.median(m['single_wall_s'])):.2f} | {float(np.median(m['single_cpu_s'])):.2f} |",
        f"| `mpirun -n 1` (one process, the ranks' launch path) | {', '.join(f'{w:.2f}' for w in m['n1_wall_s'])} | "
        f"{float(np.median(m['n1_wall_s'])):.2f} | |",
        f"| `mpirun -n 2` | {', '.join(f'{w:.2f}' for w in m['n2_wall_s'])} | "
        f"{float(np.median(m['n2_wall_s'])):.2f} | {float(np.median(m['n2_cpu_s'])):.2f} |",
        f"| static split, no tq MPI (calibration) | {', '.join(f'{w:.2f}' for w in m['static_wall_s'])} | "
        f"{float(np.median(m['static_wall_s'])):.2f} | {float(np.median(m['static_cpu_s'])):.2f} |",
        "",
        f"Speed-up at `-n 2`: **{m['speedup_n2']:.2f}x** against the plain process, **{m['speedup_vs_n1']:.2f}x** "
        f"against `mpirun -n 1`. The model's `-n 2` prediction: {m['pred_n2_s']:.2f} s, "
        f"**{m['pred_n2_err_pct']:+.1f}%** from the measurement.",
        "",
        "## Model",
        "",
        "W(P) = S + max(ceil(N / P) (c + r + m), N m): rank 0 computes units like every rank and, between two of "
        "its own, takes the results that arrived and tops up every rank's units from a queue in decreasing estimated "
        "cost, so with N units of mean cost c the busiest rank does about ceil(N / P) of them; each unit costs its "
        "compute c, its slice read r and its messages m (a result and a work message, sent without blocking); rank "
        "0 handles the N messages one after another, which bounds the rate. S is the fixed cost: launch, MPI_Init, "
        "configurations, rank 0's aggregation and writing (measured here with a one-unit sweep, "
        f"{m['tiny_single_s']:.2f} s alone, {m['tiny_n2_s']:.2f} s under `mpirun -n 2`).",
        "",
        f"For the `-n 2` check, c = the single process's CPU seconds per unit ({m['unit_cpu_s_sweep'] * 1e3:.2f} ms) "
        "divided by the CPU share each of two processes launched by `mpirun -n 2` gets on this machine, measured in "
        "the same alternation without tq's MPI code (the two dumps swept by two independent processes, one each; "
        f"median share {m['share_pair_median']:.2f} of a core, launch excluded; a plain single process got "
        f"{', '.join(f'{x:.2f}' for x in m['share_single'])}): the machine's contention is an input, what tq's MPI "
        "adds (launch, the messages, the last round's imbalance) is the model. m = 20 us (two small messages over "
        "shared memory).",
        "",
        "On this shared machine a process gets a fraction of a core that changes from minute to minute (other "
        "jobs, the kernel's per-session group scheduling), which is why the baselines alternate with the MPI run and "
        "the medians are compared. On a dedicated node the share is 1 and the model applies with c = the CPU cost.",
        "",
        "## 70B-shaped sweep: 80 layers x 8 kv heads x 32k tokens x 100 configurations (64,000 units)",
        "",
        "Assumptions: c from the fit above at T = 32768 (one core per rank, `--threads 1`; the 100 configurations "
        "cost like the measured mix); every unit reads its slice anew (keys, values and 8 query heads in float16: "
        f"{(2 + G) * 32768 * D * 2 / 1e6:.0f} MB) at 1 GB/s per rank (r = {m['read70_s']:.3f} s); messages between "
        f"nodes at 5 us latency and 10 GB/s (m = {m['msg70_s'] * 1e6:.1f} us); homogeneous nodes (bitwise "
        "identical results need the same binary and CPU kind on every rank); S as measured here.",
        "",
        "| ranks | wall (h) | speed-up | efficiency |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['ranks']} | {r['wall_h']:.1f} | {r['speedup']:.1f} | {r['efficiency']:.2f} |" for r in rows]
    lines += [
        "",
        "Units are minutes long and messages a few hundred bytes, so the model stays near-linear up to 512 ranks: "
        "the dispatcher would saturate only at about c / m ranks, and the last round's imbalance is one unit out of "
        "ceil(N / P). Past N ranks (64,000) units would have to be split further.",
        "",
        "![scaling](scaling.png)",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
