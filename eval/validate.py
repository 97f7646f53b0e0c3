#!/usr/bin/env python3
"""validate.py: do tq's offline metrics predict the closed loop? Drives the tq CLI over both bundled models and two
texts each: dumps, offline sweeps, closed-loop perplexity / generation on the same tokens, per-layer closed-loop
sensitivity, schedules; then joins the rows on the configuration columns and ranks every proxy against every outcome.

Every run is one tq command whose output lands in WORK/<model>/ beside a .cmd file holding the command: a rerun skips
a run whose output exists and whose command is unchanged. `--stage runs` only runs, `--stage analyze` only analyses.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Two disjoint texts of >= 512 tokens for both tokenizers. A: the opening of A Tale of Two Cities (its first 512
# tokens end near character 2400). B: the other two bundled passages (Doyle, Austen: 248 + 205 tokens, too short
# alone) followed by the Tale's last paragraphs from character 2719 on, past anything A reads: 592 tokens (SmolLM2),
# 567 (Gemma 3). B is built by text_b() into the work folder, the same bytes every time.
TEXTS = {"A": "datasets/text/tale-of-two-cities.txt", "B": None}
TALE_B_FROM = 2719


def text_b(work):
    rd = lambda n: open(os.path.join(ROOT, "datasets/text", n), encoding="utf-8").read()
    b = (rd("scandal-in-bohemia.txt").strip() + "\n\n" + rd("pride-and-prejudice.txt").strip() + "\n\n" +
         rd("tale-of-two-cities.txt")[TALE_B_FROM:].strip() + "\n")
    os.makedirs(work, exist_ok=True)
    p = os.path.join(work, "text_B.txt")
    if not os.path.exists(p) or open(p, encoding="utf-8").read() != b:
        with open(p + ".tmp", "w", encoding="utf-8") as f:
            f.write(b)
        os.replace(p + ".tmp", p)
    return p
# SmolLM2: 512 tokens, what the shared cores afford for ~40 closed-loop configurations per text. Gemma 3: also 512,
# its sliding window: every query of a 512-token text sees its whole causal prefix, so the offline metrics (which
# honour the window) and the loop see the same attention. Longer texts cost linearly more per configuration (the
# 262k-entry output matmul dominates Gemma's pass) and were not affordable here.
MODELS = {"smollm2": {"tokens": 512, "layers": 30}, "gemma3": {"tokens": 512, "layers": 18}}

# Configuration groups: each is one set of axes given identically to tq sweep, tq perplexity and tq generate, so
# their rows join on (method, params, values).
GROUPS = [
    ("turbo-mse", ["--methods", "turbo-mse", "--bits", "2,3,4", "--rotation", "dense,hadamard", "--center", "off,on"]),
    ("turbo-prod", ["--methods", "turbo-prod", "--bits", "2,3,4", "--rotation", "dense,hadamard"]),
    ("kivi-polar-int8", ["--methods", "kivi,polar,int8", "--bits", "2,3,4"]),
    ("qjl-vtmse4", ["--methods", "qjl", "--bits", "1", "--values", "turbo-mse:4"]),
    ("tmse-vkivi4", ["--methods", "turbo-mse", "--bits", "2,3,4", "--values", "kivi:4"]),
    ("tmse-vint8", ["--methods", "turbo-mse", "--bits", "2,3,4", "--values", "int8:8"]),
    ("tmse4-vtmse2", ["--methods", "turbo-mse", "--bits", "4", "--values", "turbo-mse:2"]),
]
# Schedules: tq sensitivity (turbo-mse, out_rel, keys and values sharing one budget) on text A's dump ->
# tq mixed-schedule. The rank rule's fractions (2/3/4 bits) hit each budget: 2.5 = half 2, half 3.
BUDGETS = [2.5, 3.0, 3.5]
RANK_FRACTIONS = {2.5: "0.5,0.5,0", 3.0: "0.25,0.5,0.25", 3.5: "0,0.5,0.5"}
# The recommended proxy as a schedule: the same out_rel scan with each unit's curve weighted by its closed-loop ΔKL
# (tq sensitivity --weights: out_rel_sw), the weights from a closed-loop scan of text A only (REF_CFG's method and
# width, keys and values units, the first LAYER_SENS_TOKENS tokens), then the exact optimum at these budgets
SW_BUDGETS = [3.0]
# ... and at those budgets uniform turbo-mse, the rank rule and both optima again over more quantizer seeds (the
# schedules fixed, every configuration at the same seeds: paired), in the closed loop only
SCHED_SEEDS = "1-4"


def schedules_of():
    """every schedule of the study: (group, schedule file name); the plain out_rel optimum and the rank rule at each
    budget, then the out_rel_sw optimum"""
    return [(f"sched-{p}-{b}", f"sched_{p}_{b}.json") for b in BUDGETS for p in ("optimal", "rank")] + \
        [(f"sched-optimal-sw-{b}", f"sched_optimal-sw_{b}.json") for b in SW_BUDGETS]
# The configuration whose single-layer closed-loop runs give each layer's sensitivity
REF_CFG = ["--methods", "turbo-mse", "--bits", "3"]
# ... over the first LAYER_SENS_TOKENS tokens of text A (a quarter of the text: one closed-loop pass per layer is the
# study's largest cost; the fit needs the layers' relative sensitivities, not their scale)
LAYER_SENS_TOKENS = 128
GEN_TOKENS = 32
GEN_PROMPT_CHARS = 600

# CI (--quick): one call, so one reference pass: int8 and three methods at 2 and 4 bits (7 configurations)
QUICK_GROUPS = [("mix", ["--methods", "int8,turbo-mse,turbo-prod,kivi", "--bits", "2,4"])]


def seed_configs(wd, b):
    """the configurations compared at budget b over SCHED_SEEDS: (group, tq perplexity axes)"""
    sched = lambda f: ["--methods", "turbo-mse", "--schedule", os.path.join(wd, f)]
    return [(f"uniform-{b:g}", ["--methods", "turbo-mse", "--bits", f"{b:g}"]),
            (f"sched-rank-{b}", sched(f"sched_rank_{b}.json")),
            (f"sched-optimal-{b}", sched(f"sched_optimal_{b}.json")),
            (f"sched-optimal-sw-{b}", sched(f"sched_optimal-sw_{b}.json"))]


def model_path(name):
    return subprocess.check_output(["bash", os.path.join(ROOT, "scripts/get_models.sh"), name], text=True).strip()


class Runner:
    def __init__(self, tq, work, log):
        self.tq, self.work, self.log = tq, work, log

    def run(self, args, out, extra_outs=()):
        """Run `tq ARGS`; skip when OUT exists with the same command recorded. Returns the command string."""
        cmd = [self.tq] + args
        text = " ".join(_quote(a) for a in cmd)
        stamp = out + ".cmd"
        if os.path.exists(out) and all(os.path.exists(e) for e in extra_outs) and os.path.exists(stamp) \
                and open(stamp).read() == text:
            return text
        print(f"validate: {text}", file=self.log, flush=True)
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"validate: failed ({r.returncode}): {text}\n{r.stderr[-2000:]}")
        with open(stamp + ".tmp", "w") as f:
            f.write(text)
        os.replace(stamp + ".tmp", stamp)
        return text


def _quote(a):
    if a and all(c.isalnum() or c in "-_.,:/=+" for c in a):
        return a
    return "'" + a.replace("'", "'\\''") + "'"


def axes_args(axes):
    return axes


def layer_sensitivity_runs(R, name, m, texts, wd):
    """closed-loop KL with only layer l quantized (every other layer kept exact), text A"""
    L = MODELS[name]["layers"]
    for l in range(L):
        keep = ",".join(str(i) for i in range(L) if i != l)
        o = os.path.join(wd, f"layersens_A_{l:02d}.csv")
        R.run(["perplexity", m, "--text", texts["A"]] + REF_CFG +
              ["--tokens", str(LAYER_SENS_TOKENS), "--threads", "1", "--format", "csv", "--keep-layers", keep,
               "-o", o], o)


def run_model(R, name, groups, tokens, texts, layer_sens, schedules, generate, wd, loop_texts=None):
    """All runs of one model (closed-loop runs only on loop_texts, default all: lets two processes share a model's
    runs). Returns nothing; outputs are in wd."""
    loop_texts = loop_texts or list(texts)
    m = model_path(name)
    os.makedirs(wd, exist_ok=True)
    dumps = {}
    for t, path in texts.items():
        dumps[t] = os.path.join(wd, f"dump_{t}.h5")
        R.run(["dump", m, "--text", path, "--tokens", str(tokens), "--threads", "1", "-o", dumps[t]], dumps[t])
    common_ppl = ["--tokens", str(tokens), "--threads", "1", "--format", "csv"]
    if loop_texts == ["layer-sens"]:
        layer_sensitivity_runs(R, name, m, texts, wd)
        return
    # offline sweeps, every text
    for t in texts:
        for g, axes in groups:
            o = os.path.join(wd, f"sweep_{t}_{g}.csv")
            R.run(["sweep", dumps[t]] + axes + ["--wide", "--aggregate", "layer", "--threads", "1",
                                                "--format", "csv", "-o", o], o)
    def ppl(t, g, axes):
        o = os.path.join(wd, f"ppl_{t}_{g}.csv")
        pl = os.path.join(wd, f"ppl_{t}_{g}_layers.csv")
        R.run(["perplexity", m, "--text", texts[t]] + axes + common_ppl + ["--per-layer", pl, "-o", o], o, [pl])

    # closed loop: text A, the layers one at a time (text A), text B, then the schedules
    if "A" in loop_texts:
        for g, axes in groups:
            ppl("A", g, axes)
    if layer_sens and "A" in loop_texts:
        layer_sensitivity_runs(R, name, m, texts, wd)
    for t in texts:
        if t != "A" and t in loop_texts:
            for g, axes in groups:
                ppl(t, g, axes)
    def sched_runs(g, sched):
        """a schedule offline (tq sweep) on every text and in the closed loop on loop_texts"""
        axes = ["--methods", "turbo-mse", "--schedule", sched]
        for t in texts:
            o = os.path.join(wd, f"sweep_{t}_{g}.csv")
            R.run(["sweep", dumps[t]] + axes + ["--wide", "--aggregate", "layer", "--threads", "1",
                                                "--format", "csv", "-o", o], o)
        for t in loop_texts:
            ppl(t, g, axes)

    if schedules:
        sens = os.path.join(wd, "sens_A.json")
        R.run(["sensitivity", dumps["A"], "--method", "turbo-mse", "--bits", "2-4", "--metric", "out_rel",
               "--tensor", "both", "--threads", "1", "-o", sens], sens)
        for b in BUDGETS:
            for pol in ("optimal", "rank"):
                s = os.path.join(wd, f"sched_{pol}_{b}.json")
                a = ["mixed-schedule", sens, "--budget", str(b), "--policy", pol, "-o", s]
                if pol == "rank":
                    a += ["--fractions", RANK_FRACTIONS[b]]
                R.run(a, s)
                sched_runs(f"sched-{pol}-{b}", s)
        # out_rel_sw: weights from the closed-loop scan of text A (keys and values units, one layer at a time)
        cl = os.path.join(wd, "clsens_A.json")
        R.run(["sensitivity", m, "--closed-loop", "--text", texts["A"], "--method", "turbo-mse", "--bits", "3",
               "--tensor", "both", "--tokens", str(LAYER_SENS_TOKENS), "--threads", "1", "-o", cl], cl)
        sw = os.path.join(wd, "sens_sw_A.json")
        R.run(["sensitivity", dumps["A"], "--method", "turbo-mse", "--bits", "2-4", "--metric", "out_rel",
               "--tensor", "both", "--weights", cl, "--threads", "1", "-o", sw], sw)
        for b in SW_BUDGETS:
            s = os.path.join(wd, f"sched_optimal-sw_{b}.json")
            R.run(["mixed-schedule", sw, "--budget", str(b), "--policy", "optimal", "-o", s], s)
            sched_runs(f"sched-optimal-sw-{b}", s)
            for t in loop_texts:
                for g, axes in seed_configs(wd, b):
                    o = os.path.join(wd, f"seeds_{t}_{g}.csv")
                    R.run(["perplexity", m, "--text", texts[t]] + axes + common_ppl + ["--seed", SCHED_SEEDS, "-o", o],
                          o)
    if generate:
        for t in loop_texts:
            prompt = open(os.path.join(ROOT, texts[t]), encoding="utf-8").read()[:GEN_PROMPT_CHARS]
            prompt = prompt[:prompt.rfind(" ")]
            for g, axes in groups + ([(g, ["--methods", "turbo-mse", "--schedule", os.path.join(wd, f)])
                                      for g, f in schedules_of()] if schedules else []):
                o = os.path.join(wd, f"gen_{t}_{g}.csv")
                R.run(["generate", m, "--prompt", prompt, "--tokens", str(GEN_TOKENS), "--threads", "1"] + axes +
                      ["--format", "csv", "-o", o], o)


# ---------------------------------------------------------------- analysis

PROXIES = ["nmse", "ip_rmse", "attn_kl", "entropy_collapse", "top8", "out_rel"]
OUTCOMES = ["dppl_pct", "kl", "top1", "first_diff"]
# every proxy and outcome oriented so that larger = more damage (rank correlations then come out positive)
PROXY_DOC = {
    "nmse": "mean of keys' and values' nmse",
    "ip_rmse": "keys' inner-product RMSE",
    "attn_kl": "keys' attention KL (values exact)",
    "entropy_collapse": "|keys' entropy collapse|",
    "top8": "1 - keys' top-8 overlap",
    "out_rel": "attention-output error, keys and values quantized",
}
OUTCOME_DOC = {"dppl_pct": "ΔPPL %", "kl": "next-token KL", "top1": "1 - top-1 agreement",
               "first_diff": "-(tokens to divergence)"}


def read_csv(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def fnum(x):
    return float(x) if x not in ("", None) else float("nan")


def ppl_values_key(row):
    return row["values"]


def sweep_values_key(row):
    vm, vp = row["values_method"], row["values_params"]
    return vm if vp in ("none", "") else vm + "," + vp


def layer_proxies(r):
    k = lambda c: fnum(r["k_" + c])
    v = lambda c: fnum(r["v_" + c])
    nm = np.nanmean([k("nmse"), v("nmse")])
    return {"nmse": nm, "ip_rmse": k("ip_rmse"), "attn_kl": k("attn_kl"),
            "entropy_collapse": abs(k("entropy_collapse")), "top8": 1 - k("top8"), "out_rel": v("out_rel")}


def load_model(wd, groups, texts, schedules):
    """rows: one dict per (text, configuration) with id columns, proxies (dump scope), per-layer proxies, outcomes."""
    rows = []
    names = [g for g, _ in groups] + ([g for g, _ in schedules_of()] if schedules else [])
    for t in texts:
        for g in names:
            sp = os.path.join(wd, f"sweep_{t}_{g}.csv")
            pp = os.path.join(wd, f"ppl_{t}_{g}.csv")
            if not (os.path.exists(sp) and os.path.exists(pp)):
                continue
            sw = read_csv(sp)
            by = {}
            for r in sw:
                # int8 / fp16 take no parameters: the sweep writes "none", the closed loop an empty field
                key = (r["method"], "" if r["params"] == "none" else r["params"], sweep_values_key(r))
                d = by.setdefault(key, {"layers": {}})
                if r["scope"] == "dump":
                    d["dump"] = r
                else:
                    d["layers"][int(r["layer"])] = layer_proxies(r)
            plp = os.path.join(wd, f"ppl_{t}_{g}_layers.csv")
            inloop = {}
            if os.path.exists(plp):
                for r in read_csv(plp):
                    inloop.setdefault(r["run"], []).append(r)
            gp = os.path.join(wd, f"gen_{t}_{g}.csv")
            gen = {}
            if os.path.exists(gp):
                for r in read_csv(gp):
                    gen[(r["method"], r["params"], r["values"])] = r
            for i, r in enumerate(read_csv(pp)):
                key = (r["method"], r["params"], ppl_values_key(r))
                if key not in by:
                    # schedule runs: the sweep names the bits "schedule"; one configuration per group
                    if len(by) == 1:
                        key = next(iter(by))
                    else:
                        raise SystemExit(f"validate: no sweep row for {key} in {sp}")
                s = by[key]
                d = s["dump"]
                row = {"text": t, "group": g, "method": r["method"], "params": r["params"], "values": r["values"],
                       "config": config_label(g, r), "bits_total_loop": fnum(r["bits_total"]),
                       "bits_k": fnum(d["k_bits_total"]), "bits_v": fnum(d["v_bits_total"]),
                       "ppl": fnum(r["ppl"]), "ppl_ref": fnum(r["ppl_ref"]),
                       "dppl_pct": fnum(r["dppl_pct"]), "kl": fnum(r["kl"]), "top1": 1 - fnum(r["top1"])}
                row.update(layer_proxies(d))
                row["entropy"] = fnum(d["k_entropy"])
                row["entropy_q"] = fnum(d["k_entropy_q"])
                row["_layers"] = s["layers"]
                il = inloop.get(str(i)) or inloop.get(str(i + 1))
                if il:
                    e = np.mean([fnum(x["entropy"]) for x in il])
                    eq = np.mean([fnum(x["entropy_q"]) for x in il])
                    row["loop_entropy_collapse"] = 1 - eq / e
                    row["loop_attn_kl"] = float(np.mean([fnum(x["attn_kl"]) for x in il]))
                gr = gen.get((r["method"], r["params"], r["values"]))
                row["first_diff"] = -fnum(gr["first_diff"]) if gr else float("nan")
                row["gen_kl_tf"] = fnum(gr["kl_tf"]) if gr else float("nan")
                rows.append(row)
    return rows


def config_label(g, r):
    if g.startswith("sched-"):
        return g
    p = r["params"].replace("bits=", "").replace(",cb=beta", "").replace(",seed=0", "").replace("rot=", "")
    lab = r["method"] + (" " + p if p else "")
    if r["values"] != ",".join(x for x in (r["method"], r["params"]) if x):
        lab += " | v " + r["values"].replace(",cb=beta", "").replace(",seed=0", "").replace("bits=", "")
    return lab


def layer_sensitivity(wd, L):
    """closed-loop ΔKL (and ΔPPL) when only layer l is quantized with REF_CFG, text A"""
    kl, dp = np.full(L, np.nan), np.full(L, np.nan)
    for l in range(L):
        p = os.path.join(wd, f"layersens_A_{l:02d}.csv")
        if os.path.exists(p):
            r = read_csv(p)[0]
            kl[l], dp[l] = fnum(r["kl"]), fnum(r["dppl_pct"])
    return kl, dp


def ranks(x):
    x = np.asarray(x, float)
    o = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[o] = np.arange(len(x))
    # average ranks over ties
    for v in np.unique(x):
        i = np.where(x == v)[0]
        if len(i) > 1:
            r[i] = r[i].mean()
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def kendall(x, y):
    """tau-b"""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    dx, dy = dx[iu], dy[iu]
    num = (dx * dy).sum()
    den = np.sqrt((dx != 0).sum() * (dy != 0).sum())
    return float(num / den) if den > 0 else float("nan")


def boot(x, y, f, n=2000, seed=0):
    """percentile 95% interval of f over configurations resampled with replacement (seeded)"""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(x), len(x))
        v = f(x[i], y[i])
        if np.isfinite(v):
            vals.append(v)
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (np.nan, np.nan)


def correlations(rows, proxies, outcomes, nboot):
    out = []
    for p in proxies:
        for o in outcomes:
            pairs = [(r[p], r[o]) for r in rows if np.isfinite(r.get(p, np.nan)) and np.isfinite(r.get(o, np.nan))]
            if len(pairs) < 5:
                continue
            x, y = zip(*pairs)
            rho, tau = spearman(x, y), kendall(x, y)
            lo, hi = boot(x, y, spearman, nboot)
            tlo, thi = boot(x, y, kendall, nboot)
            out.append({"proxy": p, "outcome": o, "n": len(x), "rho": rho, "rho_lo": lo, "rho_hi": hi,
                        "tau": tau, "tau_lo": tlo, "tau_hi": thi})
    return out


def weighted(rows, w, metric, name, power=1.0):
    """name := sum over layers of w[l] * metric_l ** power (layers missing a value skipped)"""
    for r in rows:
        s, ok = 0.0, False
        for l, v in r["_layers"].items():
            x = v.get(metric, np.nan)
            if np.isfinite(x) and l < len(w) and np.isfinite(w[l]):
                s += w[l] * x ** power
                ok = True
        r[name] = s if ok else np.nan


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tq", default=os.path.join(ROOT, "tq"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build/validate"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results/validation"))
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--stage", default="all", choices=["all", "runs", "analyze"])
    ap.add_argument("--no-generate", action="store_true")
    ap.add_argument("--no-layer-sens", action="store_true", help="skip the one-layer-at-a-time closed-loop runs")
    ap.add_argument("--loop-texts", default=None, help="closed-loop runs on these texts only, e.g. B")
    ap.add_argument("--groups", default=None,
                    help="closed-loop runs of these configuration groups only (comma list; 'none': schedules only)")
    ap.add_argument("--layer-sens-only", action="store_true",
                    help="only the dumps and the one-layer-at-a-time closed-loop runs (a separate process)")
    ap.add_argument("--quick", action="store_true",
                    help="CI: SmolLM2, 128 tokens, one text, a few configurations, no schedules/generation")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the configurations")
    a = ap.parse_args()
    tq = os.path.abspath(a.tq)
    os.chdir(ROOT)
    R = Runner(tq, a.work, sys.stderr)
    models = a.models.split(",")
    if a.quick:
        groups, texts, sched, lsens, gen = QUICK_GROUPS, {"A": TEXTS["A"]}, False, False, False
        a.boot = min(a.boot, 500)  # 7 configurations: 500 resamples settle the percentiles to ~0.02
    else:
        texts = {"A": TEXTS["A"], "B": os.path.relpath(text_b(a.work), ROOT)}
        groups, sched, lsens, gen = GROUPS, True, True, not a.no_generate
    if a.stage in ("all", "runs"):
        if a.groups:
            keep = a.groups.split(",")
            groups = [g for g in groups if g[0] in keep]
        for name in models:
            tokens = 128 if a.quick else MODELS[name]["tokens"]
            run_model(R, name, groups, tokens, texts, lsens and not a.no_layer_sens, sched, gen,
                      os.path.join(a.work, name),
                      ["layer-sens"] if a.layer_sens_only else a.loop_texts.split(",") if a.loop_texts else None)
    if a.stage in ("all", "analyze"):
        from validate_report import report
        report(a, models, groups, texts, sched, lsens)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
