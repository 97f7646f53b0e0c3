#!/usr/bin/env python3
"""plot_gemma3.py: the per-layer Gemma 3 findings from what scripts/gemma3_findings.sh leaves in OUT (sweep.csv,
info.json, smollm2_info.json, sensitivity_*.json) and SmolLM2's sweep in results/demo/sweep.csv:
OUT/attn_kl_per_layer.png (keys' attn_kl per layer at 3 bits for each method, global layers marked; key channel
outlier ratio per layer) and OUT/summary.md (the tables and the numbers the README quotes, all computed here).

usage: scripts/plot_gemma3.py OUT [--smollm2-sweep results/demo/sweep.csv]"""
import argparse
import csv
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = ["turbo-mse", "kivi", "polar"]
COLORS = {"turbo-mse": "tab:blue", "kivi": "tab:orange", "polar": "tab:green"}


def layer_rows(path):
    """{(method, bits, layer): row} of the per-layer keys rows (head = all) of a sweep CSV."""
    out = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["tensor"] == "keys" and r["scope"] == "layer" and r["method"] in METHODS:
                # the nominal --bits: polar's code bits are 1.94/2.88/3.81 at --bits 2/3/4
                out[(r["method"], round(float(r["bits_code"])), int(r["layer"]))] = r
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--smollm2-sweep", default="results/demo/sweep.csv")
    a = ap.parse_args()
    info = json.load(open(os.path.join(a.out, "info.json")))
    s_info = json.load(open(os.path.join(a.out, "smollm2_info.json")))
    g = layer_rows(os.path.join(a.out, "sweep.csv"))
    s = layer_rows(a.smollm2_sweep) if os.path.exists(a.smollm2_sweep) else {}
    layers = [x["layer"] for x in info["layers"]]
    glob = [x["layer"] for x in info["layers"] if x["sliding_window"] == 0]
    slid = [x["layer"] for x in info["layers"] if x["sliding_window"] > 0]
    window = {x["layer"]: x["sliding_window"] for x in info["layers"]}
    kout = {x["layer"]: x["key_outlier_ratio"] for x in info["layers"]}
    s_kout = [x["key_outlier_ratio"] for x in s_info["layers"]]
    kl = lambda d, m, b, l: float(d[(m, b, l)]["attn_kl"])  # noqa: E731
    ent = lambda d, m, b, l: float(d[(m, b, l)]["entropy"])  # noqa: E731

    # ---- plot
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for ax in (ax1, ax2):
        for l in glob:
            ax.axvspan(l - 0.5, l + 0.5, color="0.85", zorder=0)
    w = 0.26
    for i, m in enumerate(METHODS):
        ax1.bar([l + (i - 1) * w for l in layers], [kl(g, m, 3, l) for l in layers], w, color=COLORS[m], label=m)
    if s:
        s_med = statistics.median(kl(s, "turbo-mse", 3, l) for l in range(s_info["n_layers"]))
        ax1.axhline(s_med, color="tab:blue", ls="--", lw=1, label=f"SmolLM2 turbo-mse, median layer ({s_med:.3g})")
    ax1.set_yscale("log")
    ax1.set_ylabel("attn_kl of keys at 3 bits (nats)")
    ax1.set_title(f"Gemma 3 270M, {info['n_tokens']} tokens: per-layer attention KL, keys quantized at 3 bits "
                  "(values exact)\ngrey = global layers (RoPE base 1e6); the others have a 512-key window (RoPE 1e4)",
                  fontsize=10)
    ax1.set_ylim(top=ax1.get_ylim()[1] * 12)  # headroom: the legend sits above the tallest bars
    ax1.legend(fontsize=8, loc="upper center", ncol=4)
    ax2.bar(layers, [kout[l] for l in layers], 0.6, color=["tab:red" if l in glob else "tab:gray" for l in layers])
    ax2.axhspan(min(s_kout), max(s_kout), color="tab:blue", alpha=0.15,
                label=f"SmolLM2's range ({min(s_kout):.1f}-{max(s_kout):.1f})")
    ax2.set_ylabel("key channel outlier ratio\n(max / median channel RMS)")
    ax2.set_xlabel("layer (red bars: global layers)")
    ax2.set_xticks(layers)
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    png = os.path.join(a.out, "attn_kl_per_layer.png")
    fig.savefig(png + ".tmp.png", dpi=110)
    os.replace(png + ".tmp.png", png)

    # ---- summary
    L = [f"# Gemma 3 270M: what quantizing its KV cache does, layer by layer", "",
         f"Dump: `datasets/gemma3-270m.h5` ({info['n_tokens']} tokens of *A Tale of Two Cities*, all "
         f"{info['n_layers']} layers, 1 KV head, 4 query heads, head_dim {info['head_dim']}; made by `tq dump`). "
         "Made by `scripts/gemma3_findings.sh` (tq info, tq sensitivity, tq sweep, this summary and "
         "attn_kl_per_layer.png). attn_kl: mean KL between the exact and the quantized attention over every query "
         "row, keys quantized, values exact, each layer's scale (1/16) and window honoured.", "",
         f"Global layers: {', '.join(map(str, glob))}; the other {len(slid)} attend a window of "
         f"{max(window.values())} keys, longer than the dump, so here every layer attends all earlier keys: the "
         "difference between global and local layers below is in their keys, not in the window.", "",
         "## Per layer (keys, attn_kl in nats; entropy of the exact attention in nats)", "",
         "| layer | window | key outlier ratio | entropy | " +
         " | ".join(f"{m} {b}b" for m in METHODS for b in (2, 3, 4)) + " |",
         "|---:|---:|---:|---:|" + "---:|" * (3 * len(METHODS))]
    for l in layers:
        L.append(f"| {l}{' (global)' if l in glob else ''} | {window[l] or 'global'} | {kout[l]:.1f} | "
                 f"{ent(g, 'turbo-mse', 3, l):.2f} | " +
                 " | ".join(f"{kl(g, m, b, l):.3g}" for m in METHODS for b in (2, 3, 4)) + " |")
    L += ["", "Bits are the nominal `--bits`. Stored bits per coordinate (norms, scales included) differ: turbo-mse "
          "2.06/3.06/4.06, kivi 3/4/5 (a float16 scale and zero per group of 32), polar 2.94/3.88/4.81 (levels "
          "3/1/1/1, 4/2/2/2, 5/3/3/3). Compare kivi at n bits with turbo-mse at n + 1.", "",
          "## Global against local layers (median over the layers of each kind)", "",
          "| method | bits | global | local | global / local | SmolLM2 (30 layers) |", "|---|---:|---:|---:|---:|---:|"]
    ratios = {}
    for m in METHODS:
        for b in (2, 3, 4):
            mg = statistics.median(kl(g, m, b, l) for l in glob)
            ms = statistics.median(kl(g, m, b, l) for l in slid)
            ratios[(m, b)] = (mg, ms)
            sm = (f"{statistics.median(kl(s, m, b, l) for l in range(s_info['n_layers'])):.3g}"
                  if s and (m, b, 0) in s else "")
            L.append(f"| {m} | {b} | {mg:.3g} | {ms:.3g} | {mg / ms:.1f}x | {sm} |")
    L += ["", "## Sensitivity ranking (tq sensitivity, keys, attn_kl, ranked at 3 bits)", ""]
    for m in ("turbo-mse", "kivi"):
        p = os.path.join(a.out, f"sensitivity_{m}.json")
        if not os.path.exists(p):
            continue
        d = json.load(open(p))
        bi = d["rows"][0]["bits_code"].index(3)
        rank = sorted(d["rows"], key=lambda u: -u["metric"][bi])
        top = [f"{u['layer']}{'*' if u['layer'] in glob else ''} ({u['metric'][bi]:.3g})" for u in rank]
        pos = [i + 1 for i, u in enumerate(rank) if u["layer"] in glob]
        L.append(f"- {m}: {', '.join(top)} — global layers (*) rank {', '.join(map(str, pos))} of {len(rank)}")
    def rank(xs):
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0] * len(xs)
        for k, i in enumerate(order):
            r[i] = k
        return r

    def spearman(x, y):
        rx, ry = rank(x), rank(y)
        n = len(x)
        return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry)) / (n * (n * n - 1))

    L += ["", "## What predicts a sensitive layer (Spearman rank correlation over the 18 layers, 3 bits)", "",
          "| method | with key outlier ratio | with mean key norm x mean query norm | with exact-attention entropy | "
          "with being global |", "|---|---:|---:|---:|---:|"]
    qk = {x["layer"]: x["key_norm_mean"] * x["query_norm_mean"] for x in info["layers"]}
    for m in METHODS:
        y = [kl(g, m, 3, l) for l in layers]
        L.append(f"| {m} | {spearman([kout[l] for l in layers], y):+.2f} | "
                 f"{spearman([qk[l] for l in layers], y):+.2f} | "
                 f"{spearman([ent(g, m, 3, l) for l in layers], y):+.2f} | "
                 f"{spearman([1 if l in glob else 0 for l in layers], y):+.2f} |")
    gk = [kout[l] for l in glob]
    sk = [kout[l] for l in slid]
    L += ["", "## Keys", "",
          f"Key channel outlier ratio (max / median channel RMS): Gemma 3 {min(kout.values()):.1f}-"
          f"{max(kout.values()):.1f} (global layers {', '.join(f'{x:.1f}' for x in gk)}; local median "
          f"{statistics.median(sk):.1f}), SmolLM2 {min(s_kout):.1f}-{max(s_kout):.1f}. Mean key norm: Gemma "
          + ", ".join(f"layer {l} {info['layers'][l]['key_norm_mean']:.0f}" for l in glob)
          + f" (global), local median {statistics.median(info['layers'][l]['key_norm_mean'] for l in slid):.0f}; "
          f"SmolLM2 median {statistics.median(x['key_norm_mean'] for x in s_info['layers']):.0f}.", ""]
    md = os.path.join(a.out, "summary.md")
    with open(md + ".tmp", "w") as f:
        f.write("\n".join(L))
    os.replace(md + ".tmp", md)
    print(f"plot_gemma3: wrote {png} and {md}")


if __name__ == "__main__":
    main()
