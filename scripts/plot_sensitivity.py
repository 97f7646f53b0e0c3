#!/usr/bin/env python3
"""plot_sensitivity.py: the per-layer (or per layer x kv head) distortion curves of a `tq sensitivity` JSON as a PNG,
optionally with the bits that `tq mixed-schedule` schedules gave each unit underneath.

usage: python3 scripts/plot_sensitivity.py SENS.json [--schedule LABEL=SCHED.json ...] [--title T] -o OUT.png
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fail(msg):
    print(f"plot_sensitivity: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path, key):
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read '{path}': {e}")
    if key not in d:
        fail(f"'{path}' has no \"{key}\" (not a tq {key[3:]} file)")
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sens")
    ap.add_argument("--schedule", action="append", default=[], metavar="LABEL=FILE")
    ap.add_argument("--title")
    ap.add_argument("-o", required=True)
    a = ap.parse_args()
    s = load(a.sens, "tq_sensitivity")
    per_head = s["units"] == "head"
    H = s["n_kv_heads"] if per_head else 1
    tensors = s["tensors"]
    scheds = []
    for spec in a.schedule:
        label, _, path = spec.partition("=")
        if not path:
            fail(f"--schedule wants LABEL=FILE, got '{spec}'")
        scheds.append((label, load(path, "tq_schedule")))

    def xpos(r):  # heads spread inside their layer's unit interval
        return r["layer"] + ((r["head"] + 0.5) / H - 0.5 if per_head else 0.0)

    nrow = 1 + (1 if scheds else 0)
    fig, axes = plt.subplots(nrow, len(tensors), figsize=(7.5 * len(tensors), 3.6 * nrow), squeeze=False,
                             sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ti, t in enumerate(tensors):
        rows = [r for r in s["rows"] if r["tensor"] == t]
        ax = axes[0][ti]
        for bi, b in enumerate(s["bits"]):
            pts = sorted((xpos(r), r["metric"][bi]) for r in rows if r["metric"][bi] is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if not per_head else ".-", ms=4, lw=1,
                    color=colors[bi % len(colors)], label=f"{b} bits")
        ax.set_yscale("log")
        ax.set_ylabel(f"{s['metric']} ({t})")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(s["bits"]))
        ax.set_title(a.title or f"{s['method']} on {s.get('model') or s['dump']}: {t}, per "
                     f"{'layer x kv head' if per_head else 'layer'}", fontsize=10)
        if scheds:
            bx = axes[1][ti]
            for si, (label, sc) in enumerate(scheds):
                bits = sc.get(t)
                if bits is None:
                    continue
                xs, ys = [], []
                for layer, v in enumerate(bits):
                    for h, b in enumerate(v if isinstance(v, list) else [v]):
                        xs.append(layer + ((h + 0.5) / len(v) - 0.5 if isinstance(v, list) else 0.0))
                        ys.append(b + 0.08 * (si - (len(scheds) - 1) / 2))  # small offsets keep schedules apart
                bx.step(xs, ys, where="mid", lw=1.2, label=f"{label} ({sc['achieved_bits']:.3g} bits)")
            bx.set_ylabel("bits")
            bx.set_xlabel("layer")
            bx.grid(True, alpha=0.3)
            bx.legend(fontsize=8)
        else:
            ax.set_xlabel("layer")
    fig.tight_layout()
    try:
        fig.savefig(a.o, dpi=110)
    except OSError as e:
        fail(f"cannot write '{a.o}': {e}")


if __name__ == "__main__":
    main()
