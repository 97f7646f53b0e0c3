"""validate_report.py: the analysis half of eval/validate.py: joins offline and closed-loop rows, derives the
sensitivity-weighted and loop-calibrated proxies (fitted on text A only), ranks every proxy against every outcome with
bootstrap intervals, and writes the tidy CSVs, the seed-claims table and results/validation/README.md.
"""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np

import validate as V

POWERS = [0.5, 1.0, 1.5, 2.0]
CAL_METRICS = ["attn_kl", "out_rel", "nmse"]


def fmt(x, d=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{d}f}"


def sig(x, n=3):
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.{n}g}"


def write_csv(path, rows, cols):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([sig(r.get(c), 9) if isinstance(r.get(c), float) else r.get(c, "") for c in cols])
    os.replace(tmp, path)


def ref_rows(rows, text):
    """the REF_CFG row (turbo-mse 3 bits dense, values same, no center) of a text"""
    for r in rows:
        if r["text"] == text and r["method"] == "turbo-mse" and r["params"] == "bits=3,rot=dense,cb=beta,seed=0" \
                and r["values"] == "turbo-mse,bits=3,rot=dense,cb=beta,seed=0":
            return r
    return None


def derive(rows, sens_kl):
    """sensitivity-weighted aggregates (w = closed-loop ΔKL of each layer alone, text A) and the loop-calibrated
    proxies cal_<m>_p<k> = Σ_l c_l m_l^k with c_l = ΔKL_l / m_l(ref config, text A)^k: each layer's offline error
    converted into its measured closed-loop KL share, then summed over layers (first order: the layers' KLs add)."""
    w = np.asarray(sens_kl, float)
    names = []
    for m in V.PROXIES:
        V.weighted(rows, w / np.nansum(w), m, m + "_sw")
        names.append(m + "_sw")
    ref = ref_rows(rows, "A")
    for m in CAL_METRICS:
        for k in POWERS:
            c = np.full(len(w), np.nan)
            for l, v in ref["_layers"].items():
                x = v.get(m, np.nan)
                if np.isfinite(x) and x > 0 and l < len(w):
                    c[l] = w[l] / x ** k
            n = f"cal_{m}_p{k:g}"
            V.weighted(rows, c, m, n, k)
            names.append(n)
    return names


def unit_weights(wd, L):
    """per layer: the closed-loop ΔKL of its keys and of its values quantized alone (tq sensitivity --closed-loop,
    clsens_A.json) and the weights tq sensitivity --weights gave them (sens_sw_A.json); NaN where not run"""
    out = [{k: float("nan") for k in ("dkl_keys", "dkl_values", "w_keys", "w_values")} for _ in range(L)]
    for f, key, col in (("clsens_A.json", "metric", "dkl_"), ("sens_sw_A.json", "weight", "w_")):
        p = os.path.join(wd, f)
        if os.path.exists(p):
            for r in json.load(open(p))["rows"]:
                v = r[key]
                out[r["layer"]][col + r["tensor"]] = float(v[0] if isinstance(v, list) else v)
    return out


def schedule_runs(name, wd, rows, texts):
    """the schedules compared at each SW_BUDGETS budget (uniform, rank rule, out_rel and out_rel_sw optima), one
    row per (text, schedule, seed): seed 0 from the study's runs, the other seeds from seeds_<text>_<group>.csv"""
    out = []
    files = dict(V.schedules_of())  # group -> schedule file
    for b in V.SW_BUDGETS:
        what = {f"uniform-{b:g}": ("uniform", "-"), f"sched-rank-{b}": ("rank", "out_rel"),
                f"sched-optimal-{b}": ("optimal", "out_rel"), f"sched-optimal-sw-{b}": ("optimal", "out_rel_sw")}
        for t in texts:
            for g, (policy, metric) in what.items():
                code = b
                if g.startswith("sched-"):
                    sp = os.path.join(wd, files[g])
                    code = json.load(open(sp))["achieved_code_bits"] if os.path.exists(sp) else float("nan")
                    r0 = next((r for r in rows if r["text"] == t and r["group"] == g), None)
                else:
                    r0 = next((r for r in rows if r["text"] == t and r["method"] == "turbo-mse" and
                               r["params"] == f"bits={b:g},rot=dense,cb=beta,seed=0" and
                               r["values"] == f"turbo-mse,bits={b:g},rot=dense,cb=beta,seed=0"), None)
                runs = [(0, r0["kl"], r0["dppl_pct"], r0["bits_total_loop"])] if r0 else []
                sp = os.path.join(wd, f"seeds_{t}_{g}.csv")
                if os.path.exists(sp):
                    for r in V.read_csv(sp):
                        runs.append((int(r["seed"]), V.fnum(r["kl"]), V.fnum(r["dppl_pct"]), V.fnum(r["bits_total"])))
                for seed, kl, dp, bt in runs:
                    out.append({"model": name, "text": t, "budget": b, "schedule": g, "policy": policy,
                                "metric": metric, "seed": seed, "bits_code": float(code), "bits_total": bt, "kl": kl,
                                "dppl_pct": dp})
    return out


SCHED_LABEL = {("uniform", "-"): "uniform turbo-mse", ("rank", "out_rel"): "rank rule (out_rel at 3 bits)",
               ("optimal", "out_rel"): "optimum of out_rel", ("optimal", "out_rel_sw"): "**optimum of out_rel_sw**"}


def sched_label(r):
    return SCHED_LABEL.get((r["policy"], r["metric"]), f"{r['policy']} {r['metric']}")


def schedule_table(w, runs):
    """the Markdown table of schedule_runs for one model: seed 0 per text, then the mean and range over seeds"""
    texts = sorted({r["text"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    w(f"| {runs[0]['budget']:.1f} bits | bits (code / stored) | " +
      " | ".join(f"KL {t} | ΔPPL {t}" for t in texts) + " | " +
      " | ".join(f"KL {t}: mean [min, max], seeds {seeds[0]}–{seeds[-1]}" for t in texts) + " |")
    w("|---|---|" + "---:|---:|" * len(texts) + "---|" * len(texts))
    for g in dict.fromkeys(r["schedule"] for r in runs):
        rs = [r for r in runs if r["schedule"] == g]
        s0 = {t: next((r for r in rs if r["text"] == t and r["seed"] == 0), None) for t in texts}
        cells = []
        for t in texts:
            cells += [fmt(s0[t]["kl"]), f"{s0[t]['dppl_pct']:+.1f}%"] if s0[t] else ["-", "-"]
        for t in texts:
            k = [r["kl"] for r in rs if r["text"] == t]
            cells.append(f"{np.mean(k):.3f} [{min(k):.3f}, {max(k):.3f}]" if k else "-")
        r = rs[0]
        w(f"| {sched_label(r)} | {r['bits_code']:.2f} / {r['bits_total']:.2f} | " + " | ".join(cells) + " |")


def schedule_wins(runs):
    """per text and per other schedule: the seeds where the out_rel_sw optimum has the lower KL (of those where both
    ran) and the mean of the paired KL ratios"""
    out = {}
    for t in sorted({r["text"] for r in runs}):
        by = {}
        for r in runs:
            if r["text"] == t:
                by.setdefault(r["seed"], {})[sched_label(r)] = r["kl"]
        sw = SCHED_LABEL[("optimal", "out_rel_sw")]
        cmp = []
        for k in dict.fromkeys(sched_label(r) for r in runs):
            if k == sw:
                continue
            pairs = [(v[sw], v[k]) for v in by.values() if sw in v and k in v]
            if pairs:
                cmp.append((k.strip("*"), sum(a < b for a, b in pairs), len(pairs),
                            float(np.mean([a / b for a, b in pairs]))))
        out[t] = cmp
    return out


def choose_calibrated(rows, cal_names):
    """the proxy among cal_names with the best Spearman ρ against closed-loop KL on text A (the fit text)"""
    A = [r for r in rows if r["text"] == "A"]
    best = None
    for n in cal_names:
        pairs = [(r[n], r["kl"]) for r in A if np.isfinite(r.get(n, np.nan))]
        if len(pairs) < 5:
            continue
        rho = V.spearman(*zip(*pairs))
        if best is None or rho > best[1]:
            best = (n, rho)
    return best


def breakers(rows, proxy, outcome="kl", k=6):
    """configurations whose proxy rank differs most from their outcome rank"""
    rs = [r for r in rows if np.isfinite(r.get(proxy, np.nan)) and np.isfinite(r.get(outcome, np.nan))]
    rp = V.ranks([r[proxy] for r in rs])
    ro = V.ranks([r[outcome] for r in rs])
    d = sorted(zip(rp - ro, rs), key=lambda t: -abs(t[0]))
    return [(int(round(x)), r) for x, r in d[:k]]


def seed_claims(name, rows, sens_kl, L, wd):
    """item 5: offline number and closed-loop consequence of each seed claim"""
    out = []
    get = lambda t, meth, params, vals=None: next((r for r in rows if r["text"] == t and r["method"] == meth and
                                                   r["params"] == params and (vals is None or r["values"] == vals)),
                                                  None)
    for t in ("A", "B"):
        for meth, p in (("turbo-mse", "bits=2,rot=dense,cb=beta,seed=0"), ("turbo-prod", "bits=2,rot=dense,cb=beta,seed=0"),
                        ("kivi", None)):
            r = next((x for x in rows if x["text"] == t and x["method"] == meth and
                      (x["params"] == p if p else x["params"].startswith("bits=2,"))), None)
            if r:
                out.append({"claim": "~65% attention-entropy collapse at 2 bits", "model": name, "text": t,
                            "config": r["config"],
                            "offline": f"entropy_collapse {100 * (1 - r['entropy_q'] / r['entropy']):+.1f}%",
                            "closed_loop": f"in-loop collapse {100 * r.get('loop_entropy_collapse', float('nan')):+.1f}%,"
                                           f" KL {fmt(r['kl'])}, ΔPPL {r['dppl_pct']:+.0f}%"})
        u3 = get(t, "turbo-mse", "bits=3,rot=dense,cb=beta,seed=0", "turbo-mse,bits=3,rot=dense,cb=beta,seed=0")
        rk = next((x for x in rows if x["text"] == t and x["group"] == "sched-rank-3.0"), None)
        if u3 and rk:
            sch = json.load(open(os.path.join(wd, "sched_rank_3.0.json")))
            out.append({"claim": "~19% lower MSE from a 4/3/2 rank schedule at ~2.94 bits", "model": name, "text": t,
                        "config": f"rank 4/3/2 ({sch.get('achieved_bits', float('nan')):.2f} code bits) vs uniform 3",
                        "offline": f"nmse {100 * (1 - rk['nmse'] / u3['nmse']):+.1f}% lower"
                                   f" (out_rel {100 * (1 - rk['out_rel'] / u3['out_rel']):+.1f}%)",
                        "closed_loop": f"KL {fmt(rk['kl'])} vs {fmt(u3['kl'])} ({100 * (1 - rk['kl'] / u3['kl']):+.0f}%"
                                       f" lower), ΔPPL {rk['dppl_pct']:+.0f}% vs {u3['dppl_pct']:+.0f}%"})
        p3 = get(t, "turbo-prod", "bits=3,rot=dense,cb=beta,seed=0")
        if u3 and p3:
            out.append({"claim": "QJL residual helps inner products (turbo-prod vs turbo-mse, 3 bits)", "model": name,
                        "text": t, "config": "turbo-prod 3 vs turbo-mse 3, dense",
                        "offline": f"ip_rmse {fmt(p3['ip_rmse'])} vs {fmt(u3['ip_rmse'])}; attn_kl {fmt(p3['attn_kl'])}"
                                   f" vs {fmt(u3['attn_kl'])}",
                        "closed_loop": f"KL {fmt(p3['kl'])} vs {fmt(u3['kl'])}, ΔPPL {p3['dppl_pct']:+.0f}% vs"
                                       f" {u3['dppl_pct']:+.0f}%"})
    u3 = ref_rows(rows, "A")
    if u3 is not None and np.isfinite(sens_kl).all():
        off = np.array([u3["_layers"].get(l, {}).get("attn_kl", np.nan) for l in range(L)])
        third = lambda i: ["first", "middle", "last"][min(2, 3 * i // L)]
        top_off = np.argsort(-off)[:3]
        top_cl = np.argsort(-np.nan_to_num(sens_kl, nan=-1))[:3]
        mid = lambda v: np.nansum(v[L // 3: 2 * L // 3]) / np.nansum(v)
        out.append({"claim": "middle layers most sensitive", "model": name, "text": "A",
                    "config": "turbo-mse 3 dense, one layer at a time",
                    "offline": f"top attn_kl layers {', '.join(f'{l} ({third(l)})' for l in top_off)};"
                               f" middle third holds {100 * mid(off):.0f}% of the sum",
                    "closed_loop": f"top ΔKL layers {', '.join(f'{l} ({third(l)})' for l in top_cl)};"
                                   f" middle third holds {100 * mid(sens_kl):.0f}%; Spearman(offline, loop)"
                                   f" {V.spearman(off, sens_kl):.2f}"})
    return out


def report(a, models, groups, texts, sched, lsens):
    os.makedirs(a.out, exist_ok=True)
    all_rows, all_corr, claims, summary = [], [], [], {}
    id_cols = ["model", "text", "group", "config", "method", "params", "values", "bits_k", "bits_v", "bits_total_loop"]
    for name in models:
        wd = os.path.join(a.work, name)
        rows = V.load_model(wd, groups, texts, sched)
        if not rows:
            print(f"validate: no rows for {name} yet", file=sys.stderr)
            continue
        for r in rows:
            r["model"] = name
        L = V.MODELS[name]["layers"]
        sens_kl, sens_dp = V.layer_sensitivity(wd, L) if lsens else (np.full(L, np.nan),) * 2
        proxies = list(V.PROXIES)
        best = None
        if lsens and np.isfinite(sens_kl).all() and ref_rows(rows, "A"):
            names = derive(rows, sens_kl)
            proxies += [n for n in names if n.endswith("_sw")]
            best = choose_calibrated(rows, [n for n in names if n.startswith("cal_")])
            if best:
                for r in rows:
                    r["calibrated"] = r[best[0]]
                proxies.append("calibrated")
            unit = unit_weights(wd, L)
            write_csv(os.path.join(a.out, f"{name}-layer-sensitivity.csv"),
                      [dict({"layer": l, "dkl": sens_kl[l], "dppl_pct": sens_dp[l],
                             "offline_attn_kl": ref_rows(rows, "A")["_layers"][l]["attn_kl"],
                             "offline_out_rel": ref_rows(rows, "A")["_layers"][l]["out_rel"]}, **unit[l])
                       for l in range(L)],
                      ["layer", "dkl", "dppl_pct", "offline_attn_kl", "offline_out_rel", "dkl_keys", "dkl_values",
                       "w_keys", "w_values"])
        # the recommended proxy: the best ρ against KL on text A among all candidates (plain, weighted, calibrated);
        # text B is never looked at to choose it
        cands = [p for p in proxies if p != "calibrated"] + [n for n in rows[0] if n.startswith("cal_")]
        rec = choose_calibrated(rows, cands)
        if rec:
            for r in rows:
                r["recommended"] = r[rec[0]]
            proxies.append("recommended")
        corr = []
        for t in texts:
            for c in V.correlations([r for r in rows if r["text"] == t], proxies, V.OUTCOMES, a.boot):
                c.update(model=name, text=t)
                corr.append(c)
        all_corr += corr
        all_rows += rows
        summary[name] = {"rows": rows, "corr": corr, "best": best, "rec": rec, "sens_kl": sens_kl, "proxies": proxies,
                         "L": L}
        if sched and not a.quick:
            claims += seed_claims(name, rows, sens_kl, L, wd)
            summary[name]["sched"] = schedule_runs(name, wd, rows, texts)
    extra = sorted({k for r in all_rows for k in r if k not in id_cols and not k.startswith("_")
                    and k not in ("model",)} - set(V.OUTCOMES) - {"ppl", "ppl_ref"})
    cols = id_cols + ["ppl", "ppl_ref"] + V.OUTCOMES + [c for c in extra if c in summary_proxy_order(summary)] + \
        [c for c in extra if c not in summary_proxy_order(summary)]
    write_csv(os.path.join(a.out, "rows.csv"), all_rows, cols)
    write_csv(os.path.join(a.out, "correlations.csv"), all_corr,
              ["model", "text", "proxy", "outcome", "n", "rho", "rho_lo", "rho_hi", "tau", "tau_lo", "tau_hi"])
    if claims:
        write_csv(os.path.join(a.out, "seed-claims.csv"), claims, ["claim", "model", "text", "config", "offline",
                                                                    "closed_loop"])
    if a.quick:
        return
    sched_rows = [r for v in summary.values() for r in v.get("sched", [])]
    write_csv(os.path.join(a.out, "schedules.csv"), sched_rows,
              ["model", "text", "budget", "schedule", "policy", "metric", "seed", "bits_code", "bits_total", "kl",
               "dppl_pct"])
    cmds = []
    for name in models:
        wd = os.path.join(a.work, name)
        for f in sorted(os.listdir(wd)) if os.path.isdir(wd) else []:
            if f.endswith(".cmd"):
                cmds.append(open(os.path.join(wd, f)).read().replace(os.path.abspath(V.ROOT) + "/", ""))
    with open(os.path.join(a.out, "commands.txt.tmp"), "w") as f:
        f.write("\n".join(cmds) + "\n")
    os.replace(os.path.join(a.out, "commands.txt.tmp"), os.path.join(a.out, "commands.txt"))
    plot = os.path.join(V.ROOT, "scripts/plot_validation.py")
    subprocess.run([sys.executable, plot, a.out], check=False)
    write_readme(a, summary, claims, texts, groups)


def summary_proxy_order(summary):
    s = []
    for v in summary.values():
        for p in v["proxies"]:
            if p not in s:
                s.append(p)
    return s


def corr_get(corr, text, proxy, outcome):
    return next((c for c in corr if c["text"] == text and c["proxy"] == proxy and c["outcome"] == outcome), None)


def ci(c, key="rho"):
    if not c:
        return "-"
    return f"{c[key]:.2f} [{c[key + '_lo']:.2f}, {c[key + '_hi']:.2f}]"


def write_readme(a, summary, claims, texts, groups):
    from validate_notes import NOTES  # the written conclusions (a separate file: they cite the numbers below)
    L = []
    w = L.append
    w("# Validation: do tq's offline proxies predict the closed loop?")
    w("")
    w("Generated by `make validate` (eval/validate.py, eval/validate_report.py, scripts/plot_validation.py); every tq "
      "command it ran is in [commands.txt](commands.txt). Do not edit: rerun.")
    w("")
    w(NOTES["setup"])
    w("")
    for name, s in summary.items():
        rows, corr = s["rows"], s["corr"]
        nA = sum(1 for r in rows if r["text"] == "A")
        nB = sum(1 for r in rows if r["text"] == "B")
        w(f"## {name}")
        w("")
        ppl = {t: next((r["ppl_ref"] for r in rows if r["text"] == t), float("nan")) for t in texts}
        w(f"{nA} configurations on text A, {nB} on text B; reference perplexity {fmt(ppl.get('A'), 2)} (A), "
          f"{fmt(ppl.get('B'), 2)} (B). Spearman ρ [bootstrap 95% interval, {a.boot} resamples of the configurations, "
          "seed 0]; every proxy and outcome oriented so that larger = more damage. Kendall τ, 1 − top-1 and "
          "tokens-to-divergence columns are in [correlations.csv](correlations.csv).")
        w("")
        w("| proxy | ρ vs ΔPPL, A | ρ vs KL, A | ρ vs ΔPPL, B | ρ vs KL, B | τ vs KL, B |")
        w("|---|---|---|---|---|---|")
        for p in s["proxies"]:
            cells = [ci(corr_get(corr, t, p, o)) for t in ("A", "B") for o in ("dppl_pct", "kl")]
            lab = {"calibrated": f"calibrated (`{s['best'][0]}`)" if s["best"] else "",
                   "recommended": f"**recommended** (`{s['rec'][0]}`)" if s["rec"] else ""}.get(p, p)
            w(f"| {lab} | " + " | ".join(cells) + f" | {ci(corr_get(corr, 'B', p, 'kl'), 'tau')} |")
        w("")
        if s["rec"]:
            c = corr_get(corr, "B", "recommended", "kl")
            w(f"Recommended proxy, chosen on text A among all {len(s['proxies']) - 1 + sum(1 for n in rows[0] if n.startswith('cal_'))} "
              f"candidates: `{s['rec'][0]}` (ρ = {s['rec'][1]:.3f} vs KL on A); on text B, held out: ρ = {ci(c)}.")
            w("")
        if s["best"]:
            c = corr_get(corr, "B", "calibrated", "kl")
            w(f"Calibrated proxy chosen on text A: `{s['best'][0]}` (ρ = {s['best'][1]:.3f} vs KL on A); on text B, "
              f"held out: ρ = {ci(c)}.")
            w("")
        rec = "recommended"
        w(f"Configurations that break the ranking of `{rec}` against KL on text B (rank of proxy − rank of KL among "
          f"{nB}; positive = the proxy overstates the damage):")
        w("")
        w("| configuration | bits (k/v) | proxy | KL | ΔPPL | rank gap |")
        w("|---|---|---:|---:|---:|---:|")
        for gap, r in breakers([r for r in rows if r["text"] == "B"], rec):
            w(f"| {r['config']} | {fmt(r['bits_k'], 2)}/{fmt(r['bits_v'], 2)} | {sig(r[rec])} | {fmt(r['kl'])} | "
              f"{r['dppl_pct']:+.1f}% | {gap:+d} |")
        w("")
        w(f"![{name}: proxies vs KL]({name}-proxies-kl.png)")
        w("")
        w(f"![{name}: proxies vs ΔPPL]({name}-proxies-dppl.png)")
        w("")
        if np.isfinite(s["sens_kl"]).any():
            w(f"![{name}: layer sensitivity]({name}-layers.png)")
            w("")
        w(NOTES.get(name, ""))
        w("")
    if any(s.get("sched") for s in summary.values()):
        b = V.SW_BUDGETS[0]
        w(f"## Schedules at {b:.1f} bits in the closed loop")
        w("")
        w(NOTES["schedules"])
        w("")
        for name, s in summary.items():
            if not s.get("sched"):
                continue
            w(f"**{name}** (KL in nats against the exact cache; seed 0 is the study's run above, the other seeds the "
              f"same schedules with other quantizer seeds, paired):")
            w("")
            schedule_table(w, s["sched"])
            w("")
            for t, cmp in schedule_wins(s["sched"]).items():
                w(f"- text {t}: the out_rel_sw optimum has lower KL than " +
                  "; than ".join(f"the {k} in {n_w} of {n} seeds (KL {100 * (r - 1):+.0f}%)" for k, n_w, n, r in cmp)
                  + " (KL change: the mean of the paired ratios).")
            w("")
        w(f"![schedules at {b:.1f} bits](schedules.png)")
        w("")
    if claims:
        w("## The seed articles' claims, offline and in the closed loop")
        w("")
        w("| claim | model | text | configuration | offline (tq sweep) | closed loop (tq perplexity) |")
        w("|---|---|---|---|---|---|")
        for c in claims:
            w(f"| {c['claim']} | {c['model']} | {c['text']} | {c['config']} | {c['offline']} | {c['closed_loop']} |")
        w("")
        w(NOTES["claims"])
        w("")
    w("## What did not run")
    w("")
    w(NOTES.get("not_run", ""))
    w("")
    for name, s in summary.items():
        wd = os.path.join(a.work, name)
        names = [g for g, _ in groups] + [g for g, _ in V.schedules_of()]
        miss = [f"{g} ({t})" for t in texts for g in names if not os.path.exists(os.path.join(wd, f"ppl_{t}_{g}.csv"))]
        gmiss = [f"{g} ({t})" for t in texts for g in names if not os.path.exists(os.path.join(wd, f"gen_{t}_{g}.csv"))]
        nl = int(np.isfinite(s["sens_kl"]).sum())
        w(f"- {name}: closed-loop groups not run: {', '.join(miss) if miss else 'none'}; one-layer sensitivity runs: "
          f"{nl} of {s['L']} layers; `tq generate` runs missing: {len(gmiss)} of {len(names) * len(texts)}.")
    w("")
    w("## Conclusions")
    w("")
    w(NOTES["conclusions"])
    w("")
    w("## Files")
    w("")
    w("- `rows.csv`: one row per (model, text, configuration): configuration columns, closed-loop outcomes "
      "(`dppl_pct`, `kl`, `top1` = 1 − top-1 agreement, `first_diff` = −tokens to divergence of a 32-token greedy "
      "continuation), every offline proxy (dump aggregate), its sensitivity-weighted (`_sw`) and calibrated (`cal_`) "
      "forms, in-loop attention metrics (`loop_*`).")
    w("- `correlations.csv`: Spearman ρ and Kendall τ with bootstrap intervals, per model × text × proxy × outcome.")
    w("- `<model>-layer-sensitivity.csv`: closed-loop ΔKL / ΔPPL with one layer quantized (turbo-mse 3 bits), "
      "beside the layer's offline attn_kl and out_rel; `dkl_keys` / `dkl_values`: the closed-loop ΔKL of its keys or "
      "values alone (`tq sensitivity --closed-loop --tensor both`), `w_keys` / `w_values` the weights "
      "`tq sensitivity --weights` made of them (mean 1 over the 2 × layers units).")
    w("- `schedules.csv`: the schedules compared in the closed loop (uniform, rank rule, out_rel and out_rel_sw "
      "optima): one row per (model, text, schedule, quantizer seed) with code and stored bits, KL and ΔPPL.")
    w("- `seed-claims.csv`, `commands.txt`, the PNGs.")
    w("")
    tmp = os.path.join(a.out, "README.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, os.path.join(a.out, "README.md"))
