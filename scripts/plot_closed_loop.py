#!/usr/bin/env python3
"""plot_closed_loop.py: figures of results/closed_loop/ from tq perplexity's and tq generate's CSVs — ΔPPL against
stored bits per method (<model>-methods.csv), KL(p_ref || p_q) against position (<model>-positions.csv, a 32-token
running mean), for generation the teacher-forced KL and the share of continuations still equal to the reference
against the generated step (<model>-generate-positions.csv), and the passkey accuracy heat map, depth x
configuration (<model>-needle.csv). Each figure is drawn when its CSV is there.
Usage: python3 scripts/plot_closed_loop.py results/closed_loop"""
import csv
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def plot_methods(out, model):
    r = rows(os.path.join(out, f"{model}-methods.csv"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in sorted({x["method"] for x in r}):
        # the main grid: quantized prefill, no recent window, dense rotation (or none), no --center, seed 0
        pts = sorted((float(x["bits_total"]), float(x["dppl_pct"])) for x in r
                     if x["method"] == m and x["recent"] == "0" and x["prefill"] == "quantized"
                     and "rot=hadamard" not in x["params"] and ",center" not in x["params"]
                     and x.get("seed", "0") == "0")
        if pts:
            ax.plot(*zip(*pts), "o-", label=m)
    ax.set_yscale("log")
    ax.set_xlabel("stored bits per K/V value (side information included)")
    ax.set_ylabel("ΔPPL % (quantized cache vs fp16 cache)")
    ax.set_title(f"{model}: closed-loop ΔPPL, {r[0]['tokens']} tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{model}-dppl-vs-bits.png"), dpi=120)
    plt.close(fig)


def plot_positions(out, model, keep=("turbo-mse", "kivi bits=2", "int8")):
    path = os.path.join(out, f"{model}-positions.csv")
    if not os.path.exists(path):
        return
    r = rows(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    runs = {}
    for x in r:
        if x["recent"] != "0" or x["prefill"] != "quantized":
            continue
        key = f"{x['method']} {x['params'].split(',')[0]}".strip()
        runs.setdefault(key, []).append((int(x["position"]), float(x["kl"])))
    k = np.ones(32) / 32
    for key, pts in sorted(runs.items()):
        if not any(s in key for s in keep):
            continue
        kl = np.array([v for _, v in sorted(pts)])
        ax.plot(np.arange(len(kl) - 31), np.convolve(kl, k, mode="valid"), label=key)
    ax.set_yscale("log")
    ax.set_xlabel("position (start of a 32-token window)")
    ax.set_ylabel("KL(p_ref || p_q), nats")
    ax.set_title(f"{model}: next-token KL along the text")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{model}-kl-vs-position.png"), dpi=120)
    plt.close(fig)


def config_label(x):
    """A configuration as one short label: method, bits (or the params), values when they differ, the knobs."""
    if x["method"] == "reference":
        return "reference (fp16 cache)"
    p = dict(kv.split("=", 1) for kv in x["params"].split(",") if "=" in kv)
    lab = x["method"] + (f" {p['bits']}b" if "bits" in p else "")
    if p.get("rot", "dense") != "dense":
        lab += f" {p['rot']}"
    if x["values"] not in ("", x["method"]) and not x["values"].startswith(x["method"] + ","):
        lab += f" V={x['values'].split(',')[0]}"
    if x.get("recent", "0") != "0":
        lab += f" recent {x['recent']}"
    if x.get("prefill") == "fp16" and x["method"] != "reference":
        lab += " fp16-prefill"
    return lab


def plot_generate(out, model):
    path = os.path.join(out, f"{model}-generate-positions.csv")
    if not os.path.exists(path):
        return
    runs = {}  # label -> step -> [kl_tf], [still equal]
    prefix_ok = {}
    for x in rows(path):
        lab = config_label(x)
        key = (x["run"], x["prompt_id"])
        step = int(x["step"])
        eq = x["token"] != "" and x["token"] == x["ref_token"]
        prefix_ok[key] = eq and prefix_ok.get(key, True) if step else eq
        d = runs.setdefault(lab, {})
        d.setdefault(step, ([], []))
        d[step][0].append(float(x["kl_tf"]))
        d[step][1].append(1.0 if prefix_ok[key] else 0.0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    order = sorted(runs, key=lambda k: -np.mean([np.mean(v[0]) for v in runs[k].values()]))
    cmap = plt.get_cmap("tab20")
    for i, lab in enumerate(order):
        steps = sorted(runs[lab])
        kl = np.array([np.mean(runs[lab][t][0]) for t in steps])
        same = np.array([np.mean(runs[lab][t][1]) for t in steps])
        a1.plot(steps, np.maximum(kl, 1e-6), color=cmap(i % 20), label=lab)
        a2.plot(steps, same, color=cmap(i % 20), label=lab)
    n_prompts = len({x for _, x in prefix_ok})
    a1.set_yscale("log")
    a1.set_xlabel("generated step")
    a1.set_ylabel("KL(p_ref || p_q), nats (teacher-forced)")
    a1.set_title("next-token KL on the reference continuation", fontsize=10)
    a2.set_xlabel("generated step")
    a2.set_ylabel(f"share of {n_prompts} prompts still identical")
    a2.set_ylim(-0.03, 1.03)
    a2.set_title("continuation identical to the reference so far", fontsize=10)
    fig.suptitle(f"{model}: generation with a quantized KV cache (mean over {n_prompts} prompts)", fontsize=11)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a2.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.45, 1.0))
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{model}-generate-kl-divergence.png"), dpi=120)
    plt.close(fig)


def plot_needle(out, model):
    path = os.path.join(out, f"{model}-needle.csv")
    if not os.path.exists(path):
        return
    r = rows(path)
    labels = []
    for x in r:
        if config_label(x) not in labels:
            labels.append(config_label(x))
    depths = sorted({float(x["depth_pct"]) for x in r})
    acc = np.full((len(labels), len(depths)), np.nan)
    trials = {x["trials"] for x in r}
    for x in r:
        acc[labels.index(config_label(x)), depths.index(float(x["depth_pct"]))] = float(x["accuracy"])
    fig, ax = plt.subplots(figsize=(max(6.0, 2.6 + 0.9 * len(depths)), 1.6 + 0.42 * len(labels)))
    im = ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for i in range(len(labels)):
        for k in range(len(depths)):
            ax.text(k, i, f"{acc[i, k]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(depths)), [f"{d:g}%" for d in depths])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("depth of the key in the filler")
    ax.set_title(f"{model}: passkey accuracy, {r[0]['context']}-token context, {'/'.join(sorted(trials))} keys/cell",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{model}-needle.png"), dpi=120)
    plt.close(fig)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "results/closed_loop"
    for model in ("smollm2", "gemma3"):
        if os.path.exists(os.path.join(out, f"{model}-methods.csv")):
            plot_methods(out, model)
            plot_positions(out, model)
        plot_generate(out, model)
        plot_needle(out, model)
    # Gemma 3's 3-bit slice (scripts/closed_loop.sh gemma3-3bit): every method of it along the text
    if os.path.exists(os.path.join(out, "gemma3-3bit-positions.csv")):
        plot_positions(out, "gemma3-3bit", keep=("turbo-mse", "turbo-prod", "kivi"))


if __name__ == "__main__":
    main()
