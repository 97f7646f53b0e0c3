#!/usr/bin/env python3
"""plot_sweep.py: plot any `tq sweep` CSV (the tidy schema of README "Output schema") — one panel per metric, error
against stored bits per method, from the dump-level rows of keys (and values where present), titled with the model
name read from the dump file the CSV names (its `model` attribute; the file name when the dump is not at hand).

usage: plot_sweep.py SWEEP.csv OUT.png [--metrics nmse,attn_kl,out_rel]"""
import argparse
import csv
import os
import sys
from collections import defaultdict


def model_name(dump, csv_dir):
    for p in (dump, os.path.join(csv_dir, dump)):
        if p.startswith("synthetic:"):
            return dump
        if os.path.exists(p):
            try:
                import h5py
                with h5py.File(p, "r") as f:
                    m = f.attrs.get("model")
                    return m.decode() if isinstance(m, bytes) else str(m) if m is not None else os.path.basename(p)
            except Exception:
                break
    return os.path.basename(dump)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("out")
    ap.add_argument("--metrics", default="nmse,attn_kl,out_rel")
    a = ap.parse_args()
    rows = [r for r in csv.DictReader(open(a.csv)) if r.get("scope") == "dump"]
    if not rows:
        sys.exit(f"plot_sweep: no dump-level rows (scope = dump) in '{a.csv}': is it a tq sweep CSV?")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    mets = [m for m in a.metrics.split(",") if any(r.get(m) for r in rows)]
    dumps = sorted({r["dump"] for r in rows})
    fig, axes = plt.subplots(len(dumps), len(mets), figsize=(4.5 * len(mets), 3.6 * len(dumps)), squeeze=False)
    for i, d in enumerate(dumps):
        name = model_name(d, os.path.dirname(os.path.abspath(a.csv)))
        for j, m in enumerate(mets):
            ax = axes[i][j]
            series = defaultdict(list)
            for r in rows:
                if r["dump"] == d and r[m]:
                    series[(r["method"], r["tensor"])].append((float(r["bits_total"]), float(r[m])))
            for (meth, t), pts in sorted(series.items()):
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if t == "keys" else "s--",
                        label=f"{meth} ({t})")
            ax.set_yscale("log")
            ax.set_xlabel("stored bits per coordinate")
            ax.set_title(f"{name}: {m}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot_sweep: wrote {a.out}")


if __name__ == "__main__":
    main()
