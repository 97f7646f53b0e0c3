#!/usr/bin/env python3
"""plot_validation.py: the figures of `make validate` from results/validation/rows.csv: each offline proxy against
closed-loop KL and ΔPPL per model (both texts, one colour per method), per-layer closed-loop sensitivity against
the layer's offline error, and (schedules.csv) the schedules' closed-loop KL over quantizer seeds.
Usage: plot_validation.py RESULTS_DIR
"""
import csv
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

PROXIES = ["nmse", "ip_rmse", "attn_kl", "entropy_collapse", "top8", "out_rel", "attn_kl_sw", "out_rel_sw",
           "calibrated", "recommended"]
LABEL = {"top8": "1 − top8", "entropy_collapse": "|entropy collapse|"}
COLORS = {"turbo-mse": "tab:blue", "turbo-prod": "tab:red", "kivi": "tab:green", "polar": "tab:purple",
          "int8": "black", "qjl": "tab:orange"}


def num(x):
    try:
        v = float(x)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def save(fig, path):
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def scatter(rows, model, outcome, path):
    ps = [p for p in PROXIES if any(num(r.get(p)) is not None for r in rows)]
    n = len(ps)
    cols = 3
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.4 * ((n + cols - 1) // cols)))
    axes = axes.ravel()
    for ax, p in zip(axes, ps):
        for r in rows:
            x, y = num(r.get(p)), num(r.get(outcome))
            if x is None or y is None or x <= 0:
                continue
            if outcome == "dppl_pct" and y <= 0:
                y = 0.05  # int8 at or below the noise floor: drawn on the axis floor
            sched = r["group"].startswith("sched-")
            ax.scatter(x, y, s=28 if not sched else 40, c=COLORS.get(r["method"], "gray"),
                       marker={"A": "o", "B": "^"}[r["text"]] if not sched else "*", alpha=0.75,
                       edgecolors="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
        ax.set_xlabel(LABEL.get(p, p) + " (offline)")
        ax.set_ylabel({"kl": "closed-loop KL (nats)", "dppl_pct": "ΔPPL (%)"}[outcome])
        ax.grid(alpha=0.3, which="both", lw=0.4)
    for ax in axes[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=m) for m, c in COLORS.items()]
    handles += [plt.Line2D([], [], ls="", marker="o", color="gray", label="text A"),
                plt.Line2D([], [], ls="", marker="^", color="gray", label="text B"),
                plt.Line2D([], [], ls="", marker="*", color="tab:blue", label="schedule")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"{model}: offline proxies vs closed-loop {'KL' if outcome == 'kl' else 'ΔPPL'} "
                 f"({len(rows)} runs, {len({r['text'] for r in rows})} text(s))")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    save(fig, path)


def layers(path_csv, model, path):
    rows = list(csv.DictReader(open(path_csv)))
    l = [int(r["layer"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.bar(l, [num(r["dkl"]) or 0 for r in rows], color="tab:blue", alpha=0.7, label="closed-loop ΔKL, layer alone")
    ax.set_xlabel("layer")
    ax.set_ylabel("ΔKL (nats)")
    kv = [(num(r.get("dkl_keys")), num(r.get("dkl_values"))) for r in rows]
    if all(k is not None and v is not None for k, v in kv):
        ax.plot(l, [k + v for k, v in kv], "x", color="black", ms=5,
                label="keys alone + values alone (tq sensitivity --closed-loop)")
    ax2 = ax.twinx()
    ax2.plot(l, [num(r["offline_attn_kl"]) for r in rows], "o-", color="tab:red", ms=3, label="offline attn_kl")
    ax2.plot(l, [num(r["offline_out_rel"]) for r in rows], "s-", color="tab:green", ms=3, label="offline out_rel")
    ax2.set_ylabel("offline metric")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # above the axes: inside, it covered the tallest bars or the offline curves on one model or the other
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.suptitle(f"{model}: turbo-mse 3 bits, one layer quantized at a time (text A)", fontsize=11)
    fig.tight_layout()
    save(fig, path)


def schedules(path_csv, path):
    """one panel per model: each schedule's closed-loop KL per text, one dot per quantizer seed (seed 0, the study's
    run, larger), the mean over seeds as a bar"""
    rows = list(csv.DictReader(open(path_csv)))
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.2), squeeze=False)
    marker = {"A": "o", "B": "^"}
    for ax, m in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == m]
        names = list(dict.fromkeys(r["schedule"] for r in rs))
        labels = []
        for i, g in enumerate(names):
            r0 = next(r for r in rs if r["schedule"] == g)
            labels.append({"uniform": "uniform", "rank": "rank rule\n(" + r0["metric"] + ")"}.get(
                r0["policy"], "optimum of\n" + r0["metric"]))
            for j, t in enumerate(sorted({r["text"] for r in rs})):
                x = i + (j - 0.5) * 0.3
                pts = [(int(r["seed"]), num(r["kl"])) for r in rs if r["schedule"] == g and r["text"] == t]
                pts = [(sd, k) for sd, k in pts if k is not None]
                if not pts:
                    continue
                ax.scatter([x] * len(pts), [k for _, k in pts], s=[36 if sd == 0 else 12 for sd, _ in pts],
                           marker=marker.get(t, "o"), color=f"C{j}", alpha=0.8, edgecolors="none",
                           label=f"text {t}" if i == 0 else None)
                mean = sum(k for _, k in pts) / len(pts)
                ax.plot([x - 0.1, x + 0.1], [mean, mean], color=f"C{j}", lw=2)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("closed-loop KL (nats)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3, axis="y", lw=0.4)
        ax.legend(fontsize=8)
        ax.set_title(f"{m}: {float(rs[0]['budget']):.1f} bits, keys and values at turbo-mse 2/3/4 per layer "
                     "(bar: mean over seeds)", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def main():
    out = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out, "rows.csv"))))
    for model in sorted({r["model"] for r in rows}):
        rs = [r for r in rows if r["model"] == model]
        scatter(rs, model, "kl", os.path.join(out, f"{model}-proxies-kl.png"))
        scatter(rs, model, "dppl_pct", os.path.join(out, f"{model}-proxies-dppl.png"))
        ls = os.path.join(out, f"{model}-layer-sensitivity.csv")
        if os.path.exists(ls):
            layers(ls, model, os.path.join(out, f"{model}-layers.png"))
    sp = os.path.join(out, "schedules.csv")
    if os.path.exists(sp):
        schedules(sp, os.path.join(out, "schedules.png"))


if __name__ == "__main__":
    main()
