#!/usr/bin/env python3
"""plot_demo.py: summarize and plot the `make demo` sweep (results/demo/sweep.csv).

Reads the per-input aggregate rows (scope = dump) of a `tq sweep` CSV, writes a Markdown summary
(results/demo/summary.md, also printed) and a PNG with key error, attention KL and output error against the stored
bits per coordinate (side information included), one line per method.
usage: plot_demo.py SWEEP.csv OUTDIR
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_demo.py SWEEP.csv OUTDIR")
    src, out = sys.argv[1], sys.argv[2]
    rows = [r for r in csv.DictReader(open(src)) if r["scope"] == "dump"]
    if not rows:
        sys.exit(f"plot_demo: no aggregate rows (scope=dump) in '{src}'")
    by = defaultdict(dict)  # (method, params) -> tensor -> row
    for r in rows:
        by[(r["method"], r["params"])][r["tensor"]] = r

    def f(r, k):
        return float(r[k]) if r and r.get(k) not in (None, "") else float("nan")

    lines = ["| method | params | bits code | bits total | compression | key nmse | value nmse | ip_nrmse |"
             " attn_kl | entropy_collapse | top8 | out_rel |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (m, p), t in sorted(by.items(), key=lambda kv: (kv[0][0], f(kv[1].get("keys"), "bits_total"))):
        k, v = t.get("keys"), t.get("values")
        lines.append(f"| {m} | {p} | {k['bits_code']} | {f(k, 'bits_total'):.3f} | {f(k, 'compression'):.2f}x |"
                     f" {f(k, 'nmse'):.4g} | {f(v, 'nmse'):.4g} | {f(k, 'ip_nrmse'):.4g} | {f(k, 'attn_kl'):.4g} |"
                     f" {f(k, 'entropy_collapse'):.4g} | {f(k, 'top8'):.3f} | {f(v, 'out_rel'):.4g} |")
    table = "\n".join(lines)
    with open(f"{out}/summary.md", "w") as fh:
        fh.write("# tq demo: the bundled SmolLM2-135M dump, all layers and kv heads\n\n")
        fh.write("Aggregates over every (layer, kv head) slice; `bits total` includes norms, scales and other side "
                 "information. Regenerate with `make demo`.\n\n" + table + "\n")
    print(table)

    methods = sorted({m for m, _ in by})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("keys", "nmse", "key NMSE  Σ‖k−k̂‖²/Σ‖k‖²"), ("keys", "attn_kl", "attention KL(p‖p̂), nats"),
              ("values", "out_rel", "output error ‖p̂V̂−pV‖/‖pV‖")]
    for ax, (tensor, metric, title) in zip(axes, panels):
        for m in methods:
            pts = sorted((f(t.get(tensor), "bits_total"), f(t.get(tensor), metric))
                         for (mm, _), t in by.items() if mm == m and t.get(tensor))
            pts = [p for p in pts if p[1] == p[1] and p[1] > 0]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
        ax.set_yscale("log")
        ax.set_xlabel("stored bits per coordinate (side info included)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("SmolLM2-135M K/V (datasets/smollm2-135m.h5): error vs bits per method")
    fig.tight_layout()
    fig.savefig(f"{out}/error_vs_bits.png", dpi=110)


if __name__ == "__main__":
    main()
