#!/usr/bin/env python3
"""plot_repro.py: the figures of `make repro` from the CSV tables eval/repro wrote, and results/paper/README.md, the
index of every table and plot with the headline numbers (paper vs exact vs tq) read from the same CSVs.

usage: scripts/plot_repro.py [results/paper]"""
import csv
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "results/paper"


def rows(name):
    with open(os.path.join(OUT, name + ".csv"), newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v not in ("", None) else math.nan


def save(fig, name):
    path = os.path.join(OUT, name)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)
    print("plot_repro: wrote", path)


def fig_dmse():
    r = rows("table1_dmse")
    fig, ax = plt.subplots(figsize=(7, 4.8))
    bits = sorted({int(x["bits"]) for x in r})
    for d, mk in zip(sorted({int(x["d"]) for x in r}), "osD^"):
        sel = [x for x in r if int(x["d"]) == d]
        ax.plot([int(x["bits"]) for x in sel], [num(x["tq"]) for x in sel], mk, ms=6, mfc="none",
                label=f"tq measured, d = {d}")
    ex = [x for x in r if int(x["d"]) == 128]
    ax.plot([int(x["bits"]) for x in ex], [num(x["exact"]) for x in ex], "-", color="k", lw=1,
            label="exact Beta Lloyd-Max, d = 128")
    ax.plot(bits, [num(ex[b - 1]["gaussian_limit"]) for b in bits], ":", color="gray", label="Gaussian limit")
    ax.plot(bits, [num(ex[b - 1]["upper"]) for b in bits], "--", color="tab:red", label="upper bound √3·π/2·4^−b")
    ax.plot(bits, [num(ex[b - 1]["lower"]) for b in bits], "--", color="tab:green", label="lower bound 4^−b")
    pb = [b for b in bits if not math.isnan(num(ex[b - 1]["paper"]))]
    ax.plot(pb, [num(ex[b - 1]["paper"]) for b in pb], "x", color="tab:purple", ms=8, label="paper (rounded)")
    ax.set_yscale("log")
    ax.set_xlabel("bits per coordinate b")
    ax.set_ylabel("D_mse = E‖x − x̂‖²  (unit x)")
    ax.set_title("TurboQuant-mse distortion vs bits (paper Fig. 3 analogue)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "table1_dmse.png")


def fig_dprod():
    r = rows("table2_dprod")
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for m, c in (("turbo-prod", "tab:blue"), ("turbo-mse", "tab:orange")):
        sel = [x for x in r if x["method"] == m]
        b = [int(x["bits"]) for x in sel]
        ax.plot(b, [num(x["tq"]) for x in sel], "o", color=c, mfc="none", ms=7, label=f"{m}: tq measured")
        ax.plot(b, [num(x["exact"]) for x in sel], "-", color=c, lw=1, label=f"{m}: exact")
    sel = [x for x in r if x["method"] == "turbo-prod"]
    b = [int(x["bits"]) for x in sel]
    ax.plot(b, [num(x["upper"]) for x in sel], "--", color="tab:red", label="upper bound √3·π²·4^−b")
    ax.plot(b, [num(x["lower"]) for x in sel], "--", color="tab:green", label="lower bound 4^−b")
    ax.set_yscale("log")
    ax.set_xlabel("bits per coordinate b")
    ax.set_xticks(b)
    ax.set_ylabel("d · D_prod = d · E⟨y, x − x̂⟩²  (unit x, y; d = 128)")
    ax.set_title("Inner-product distortion: turbo-prod vs turbo-mse")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "table2_dprod.png")


def fig_hist():
    r = rows("table2_hist")
    fig, axs = plt.subplots(1, 4, figsize=(14, 3.6))
    for b, ax in zip(range(1, 5), axs):
        for m, c in (("turbo-prod", "tab:blue"), ("turbo-mse", "tab:orange")):
            sel = [x for x in r if x["method"] == m and int(x["bits"]) == b]
            lo = [num(x["bin_lo"]) for x in sel]
            cnt = [num(x["count"]) for x in sel]
            w = lo[1] - lo[0]
            ax.bar([v + w / 2 for v in lo], cnt, width=w, alpha=0.5, color=c, label=m)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"b = {b}")
        ax.set_xlabel("⟨y, x̂⟩ − ⟨y, x⟩")
        if b == 1:
            ax.set_ylabel("count of pairs")
        ax.legend(fontsize=8)
    fig.suptitle("Inner-product error, d = 128, independent unit y (paper Fig. 1 analogue)")
    save(fig, "table2_hist.png")


def fig_bias():
    r = rows("table2_bias")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, c in (("turbo-mse", "tab:orange"), ("turbo-prod", "tab:blue")):
        sel = [x for x in r if x["method"] == m]
        rho = [num(x["rho"]) for x in sel]
        ax.errorbar(rho, [num(x["bias"]) for x in sel], yerr=[2 * num(x["se"]) for x in sel], fmt="o", color=c,
                    mfc="none", capsize=3, label=f"{m}: tq (±2 se)")
        ax.plot(rho, [num(x["exact"]) for x in sel], "-", color=c, lw=1,
                label=f"{m}: exact ({'−ρ·D_mse(2)' if m == 'turbo-mse' else '0'})")
    ax.set_xlabel("inner product ⟨y, x⟩ = ρ")
    ax.set_ylabel("mean error of ⟨y, x̂⟩")
    ax.set_title("Bias vs inner product at 2 bits, d = 128 (paper Fig. 2 analogue)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "table2_bias.png")


def fig_qjl():
    r = rows("table3_qjl")
    m = [int(x["m"]) for x in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(m, [num(x["tq"]) for x in r], yerr=[2 * num(x["se"]) for x in r], fmt="o", mfc="none", capsize=3,
                label="tq measured E e² (±2 se)")
    ax.plot(m, [num(x["theory"]) for x in r], "-", color="k", lw=1, label="((π/2)‖q‖²‖k‖² − ⟨q,k⟩²)/m")
    ax.plot(m, [num(x["wrong_sqrt"]) for x in r], "--", color="tab:red", lw=1, label="with π/2 in place of √(π/2)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("projections m")
    ax.set_ylabel("variance of the QJL inner-product estimate")
    ax.set_title("QJL variance vs projections, d = 128")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "table3_qjl.png")


def readme():
    idx = []
    with open(os.path.join(OUT, "index.tsv")) as f:
        for line in f:
            name, title = line.rstrip("\n").split("\t", 1)
            if name not in [n for n, _ in idx]:
                idx.append((name, title))
    idx.sort(key=lambda nt: nt[0].split("_")[0])  # by table number, the order eval/repro wrote them within one
    t1 = [x for x in rows("table1_dmse") if x["d"] == "128" and int(x["bits"]) <= 4]
    t2 = rows("table2_dprod")
    t3 = rows("table3_qjl")
    out = ["# Paper reproduction (`make repro`)", "",
           "Generated by `make repro` (eval/repro.c, then scripts/plot_repro.py) — do not edit by hand. Each table is "
           "a Markdown file with its CSV beside it; the first three are asserted against theory in CI "
           "(tests/test_paper.c runs the same lib/paper.c code on smaller samples).", "",
           "## Headline numbers (d = 128, unit vectors)", "",
           "| b | D_mse paper | D_mse exact | D_mse tq | d·D_prod paper (turbo-prod) | exact | tq |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for x in t1:
        p = [y for y in t2 if y["method"] == "turbo-prod" and y["bits"] == x["bits"]][0]
        out.append(f"| {x['bits']} | {x['paper']} | {num(x['exact']):.4g} | {num(x['tq']):.4g} | {p['paper']} | "
                   f"{num(p['exact']):.4g} | {num(p['tq']):.4g} |")
    s1 = [y for y in t2 if y["method"] == "turbo-mse" and y["bits"] == "1"][0]
    worst = max(abs(num(x["tq/theory"]) - 1) for x in t3)
    out += ["", f"1-bit turbo-mse inner-product slope: tq {num(s1['slope']):.4f}, exact 1 − D_mse(1) = "
                f"{num(s1['slope_exact']):.4f}, paper 2/π = {2 / math.pi:.4f}. QJL variance: tq / theory within "
                f"{100 * worst:.1f}% for m = {t3[0]['m']}..{t3[-1]['m']}.", "", "## Tables", ""]
    for name, title in idx:
        out.append(f"- [{title}]({name}.md) — [CSV]({name}.csv)")
    out += ["", "## Plots", ""]
    for png, what in (("table1_dmse.png", "D_mse vs bits, log scale, with bounds (Fig. 3 analogue)"),
                      ("table2_dprod.png", "d·D_prod vs bits, turbo-prod vs turbo-mse, with bounds"),
                      ("table2_hist.png", "inner-product error histograms at b = 1..4 (Fig. 1 analogue)"),
                      ("table2_bias.png", "bias vs inner product at 2 bits (Fig. 2 analogue)"),
                      ("table3_qjl.png", "QJL variance vs projections")):
        out.append(f"- [{png}]({png}): {what}")
    tpath = os.path.join(OUT, "timing.tsv")
    if os.path.exists(tpath):
        with open(tpath) as f:
            tt = [line.split() for line in f if line.strip()]
        out += ["", "Run time of each part on the machine that generated these files: " +
                ", ".join(f"{a} {b} s" for a, b in tt) + f" (total {sum(float(b) for _, b in tt):.0f} s)."]
    with open(os.path.join(OUT, "README.md.tmp"), "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(os.path.join(OUT, "README.md.tmp"), os.path.join(OUT, "README.md"))
    print("plot_repro: wrote", os.path.join(OUT, "README.md"))


if __name__ == "__main__":
    fig_dmse()
    fig_dprod()
    fig_hist()
    fig_bias()
    fig_qjl()
    readme()
