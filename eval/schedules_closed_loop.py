#!/usr/bin/env python3
"""schedules_closed_loop.py: the tables and plot of results/schedules/ from eval/schedules_closed_loop.sh's runs —
schedules.csv (one row per model x policy x metric x budget x seed: achieved bits, closed-loop kl, dppl_pct, top1),
rank_agreement.csv (Spearman rho of each offline scan against the closed-loop cl_kl scan, per width and pooled over
widths) and kl_vs_bits.png (closed-loop KL against average code bits per policy, one panel per model).
Usage: python3 eval/schedules_closed_loop.py --work build/schedules --out results/schedules smollm2 gemma3"""
import argparse, csv, json, os
import numpy as np

BUDGETS = ["2.5", "3.0", "3.5"]
OFFLINE = ["attn_kl", "out_rel", "out_proj"]
METRICS = OFFLINE + ["cl_kl"]


def ranks(x):
    """average ranks (ties share their mean rank), as Spearman's rho needs"""
    x = np.asarray(x, float)
    o = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[o] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        m = x == v
        r[m] = r[m].mean()
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def sens(out, model, met, pre="sens-"):
    s = json.load(open(f"{out}/{model}/{pre}{met}.json"))
    rows = sorted((r for r in s["rows"] if r["tensor"] == "keys"), key=lambda r: (r["layer"], r["head"] or 0))
    return s["bits"], np.array([r["metric"] for r in rows], float)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="build/schedules")
    ap.add_argument("--out", default="results/schedules")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    runs, agree = [], []
    for model in a.models:
        # rank agreement of the closed-loop scan with each offline one
        bits, cl = sens(a.out, model, "cl_kl")
        # a closed-loop scan over fewer tokens than the offline ones (TOKENS_CL) is compared with offline scans of
        # the same prefix (sens{N}-METRIC.json: `tq sensitivity DUMP --tokens N`)
        ncl = json.load(open(f"{a.out}/{model}/sens-cl_kl.json"))["tokens"]
        pre = f"sens{ncl}-" if os.path.exists(f"{a.out}/{model}/sens{ncl}-attn_kl.json") else "sens-"
        for met in OFFLINE:
            b2, off = sens(a.out, model, met, pre)
            assert b2 == bits and off.shape == cl.shape, (model, met)
            for i, b in enumerate(bits):
                agree.append({"model": model, "offline": met, "tokens": ncl, "bits": b, "units": cl.shape[0],
                              "spearman": round(spearman(off[:, i], cl[:, i]), 4)})
            # pooled: every (unit, width) pair, what an allocator trades between
            agree.append({"model": model, "offline": met, "tokens": ncl, "bits": "all", "units": cl.size,
                          "spearman": round(spearman(off.ravel(), cl.ravel()), 4)})
        # the closed-loop runs of every schedule, with the sum of the units' own closed-loop KL at their widths
        # (what the loop would give if the layers' effects added up)
        def add(policy, metric, budget, name, sched, text="fit"):
            f = f"{a.work}/{model}/ppl-{name}.csv"
            if not os.path.exists(f):
                return
            keys = json.load(open(sched))["keys"] if sched else [int(float(budget))] * cl.shape[0]
            ach = float(np.mean(keys))
            cl_sum = sum(cl[l, bits.index(b)] for l, b in enumerate(keys))
            for r in csv.DictReader(open(f)):
                runs.append({"model": model, "text": text, "policy": policy, "metric": metric, "budget": budget,
                             "achieved_bits": round(ach, 4), "cl_kl_sum": round(cl_sum, 6), "seed": r["seed"],
                             "tokens": r["tokens"],
                             "bits_total": r["bits_total"], "ppl": r["ppl"], "ppl_ref": r["ppl_ref"],
                             "dppl_pct": r["dppl_pct"], "kl": r["kl"], "top1": r["top1"]})
        for b in (2, 3, 4):
            add("uniform", "", f"{b}.0", f"uniform-{b}", None)
        for B in BUDGETS:
            for met in METRICS:
                add("optimal", met, B, f"optimal-{met}-{B}", f"{a.out}/{model}/optimal-{met}-{B}.json")
            add("rank", "attn_kl", B, f"rank-{B}", f"{a.out}/{model}/rank-{B}.json")
            add("boundary", "", B, f"boundary-{B}", f"{a.out}/{model}/boundary-{B}.json")
        # held-out text: the 3.0-bit schedules unchanged over other tokens
        add("uniform", "", "3.0", "heldout-uniform-3", None, "heldout")
        for met in METRICS:
            add("optimal", met, "3.0", f"heldout-optimal-{met}-3.0", f"{a.out}/{model}/optimal-{met}-3.0.json",
                "heldout")
        add("rank", "attn_kl", "3.0", "heldout-rank-3.0", f"{a.out}/{model}/rank-3.0.json", "heldout")
        add("boundary", "", "3.0", "heldout-boundary-3.0", f"{a.out}/{model}/boundary-3.0.json", "heldout")
    for name, rows in (("schedules.csv", runs), ("rank_agreement.csv", agree)):
        with open(f"{a.out}/{name}.tmp", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        os.replace(f"{a.out}/{name}.tmp", f"{a.out}/{name}")
    plot(runs, a.models, f"{a.out}/kl_vs_bits.png")


def plot(runs, models, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    style = {("uniform", ""): ("k", "s", "uniform"), ("rank", "attn_kl"): ("tab:red", "v", "rank rule (attn_kl)"),
             ("boundary", ""): ("tab:brown", "^", "boundary rule"),
             ("optimal", "attn_kl"): ("tab:blue", "o", "optimal: attn_kl"),
             ("optimal", "out_rel"): ("tab:cyan", "o", "optimal: out_rel"),
             ("optimal", "out_proj"): ("tab:purple", "D", "optimal: out_proj"),
             ("optimal", "cl_kl"): ("tab:green", "*", "optimal: cl_kl (closed loop)")}
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        for key, (c, mk, label) in style.items():
            pts = {}
            for r in runs:
                if r["model"] == model and r["text"] == "fit" and (r["policy"], r["metric"]) == key:
                    pts.setdefault(r["achieved_bits"], []).append(float(r["kl"]))
            if not pts:
                continue
            x = sorted(pts)
            ax.plot(x, [np.mean(pts[v]) for v in x], color=c, marker=mk, label=label,
                    ls="--" if key[0] != "optimal" else "-", ms=8 if mk == "*" else 6)
        ax.set_yscale("log")
        ax.set_xlabel("average code bits per key coordinate")
        ax.set_ylabel("closed-loop next-token KL (nats)")
        ax.set_title(f"{model}: turbo-mse keys, values exact")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)


if __name__ == "__main__":
    main()
