#!/usr/bin/env python3
"""plot_closed_loop.py: figures of results/closed_loop/ from tq perplexity's CSVs — ΔPPL against stored bits per
method (<model>-methods.csv) and KL(p_ref || p_q) against position (<model>-positions.csv, a 32-token running mean).
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
        pts = sorted((float(x["bits_total"]), float(x["dppl_pct"])) for x in r
                     if x["method"] == m and x["recent"] == "0" and x["prefill"] == "quantized")
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


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "results/closed_loop"
    for model in ("smollm2", "gemma3"):
        if os.path.exists(os.path.join(out, f"{model}-methods.csv")):
            plot_methods(out, model)
            plot_positions(out, model)
    # Gemma 3's 3-bit slice (scripts/closed_loop.sh gemma3-3bit): every method of it along the text
    if os.path.exists(os.path.join(out, "gemma3-3bit-positions.csv")):
        plot_positions(out, "gemma3-3bit", keep=("turbo-mse", "turbo-prod", "kivi"))


if __name__ == "__main__":
    main()
