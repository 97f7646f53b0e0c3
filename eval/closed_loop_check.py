#!/usr/bin/env python3
"""closed_loop_check.py: `tq perplexity` against an independent closed loop — scripts/dump_kv.py --closed-loop, a
float64 NumPy pass of SmolLM2 whose KV cache goes through TurboQuant-mse written from the paper's algorithm (Haar
rotation, Beta Lloyd-Max codebook, fp16 norm), no code shared with tq — on the same tokens over several rotation
seeds. The two draw different rotations, so their ΔPPL agree only as distributions over seeds: the report gives each
side's mean and seed-to-seed spread and the difference of the means in standard errors.
Writes results/closed_loop/numpy_check.md; --golden writes tests/golden/models/closed_loop_numpy.json (the short run
tests/py/test_closed_loop_numpy.py checks) instead.
usage: python3 eval/closed_loop_check.py [--tokens 256] [--seeds 0-4] [--bits 3] [--tq ./tq]
                                         [--numpy-json F] [--tq-json F] [--golden]"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import dump_kv  # noqa: E402

TEXT = os.path.join(ROOT, "datasets", "text", "tale-of-two-cities.txt")


def verdict(dd, se, dk, sek):
    """Agreement within the seed-to-seed spread: both differences of the means within two standard errors."""
    out = []
    for name, d, e in (("ΔPPL", dd, se), ("KL", dk, sek)):
        out.append(f"{name} {'within' if abs(d) <= 2 * e else 'outside'} two standard errors")
    return "**" + "; ".join(out) + "**" + ("." if all(abs(d) <= 2 * e for d, e in ((dd, se), (dk, sek))) else
                                          ": more seeds would tell whether the gap is systematic.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--tq", default=os.path.join(ROOT, "tq"))
    ap.add_argument("--numpy-json", help="reuse a `dump_kv.py --closed-loop` JSON of the same settings")
    ap.add_argument("--tq-json", help="reuse a `tq perplexity --format json` output of the same settings")
    ap.add_argument("--golden", action="store_true")
    a = ap.parse_args()
    model = subprocess.run(["bash", os.path.join(ROOT, "scripts", "get_models.sh"), "smollm2"], capture_output=True,
                           text=True, check=True).stdout.strip()
    seeds = dump_kv.parse_layers(a.seeds)
    if a.numpy_json:
        with open(a.numpy_json) as f:
            res = json.load(f)
    else:
        with open(TEXT, encoding="utf-8") as f:
            res = dump_kv.closed_loop(model, f.read(), a.tokens, a.bits, seeds)
    if res["tokens"] != a.tokens or [r["seed"] for r in res["runs"]] != seeds or res["bits"] != a.bits:
        raise SystemExit("closed_loop_check: the NumPy run's tokens, seeds or bits differ from the options")
    if a.golden:
        out = os.path.join(ROOT, "tests", "golden", "models", "closed_loop_numpy.json")
        res["text"] = os.path.basename(TEXT)
        res["written_by"] = "eval/closed_loop_check.py --golden " + " ".join(
            f"--{k} {v}" for k, v in (("tokens", a.tokens), ("seeds", a.seeds), ("bits", a.bits)))
        with open(out + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        os.replace(out + ".tmp", out)
        print(f"closed_loop_check: wrote {out}")
        return
    if a.tq_json:
        with open(a.tq_json) as f:
            rows = json.load(f)
    else:
        r = subprocess.run([a.tq, "perplexity", model, "--text", TEXT, "--tokens", str(a.tokens), "--methods",
                            "turbo-mse", "--bits", str(a.bits), "--rotation", "dense", "--codebook", "beta", "--seed",
                            ",".join(map(str, seeds)), "--prefill", "quantized", "--recent", "0", "--threads", "1",
                            "--format", "json"], capture_output=True, text=True, check=True)
        rows = json.loads(r.stdout)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    tq = {int(r["seed"]): r for r in rows}
    if sorted(tq) != seeds:
        raise SystemExit("closed_loop_check: tq's seeds differ from the options")
    npd = np.array([r["dppl_pct"] for r in res["runs"]])
    tqd = np.array([float(tq[s]["dppl_pct"]) for s in seeds])
    npk = np.array([r["kl"] for r in res["runs"]])
    tqk = np.array([float(tq[s]["kl"]) for s in seeds])
    se = np.sqrt(npd.var(ddof=1) / len(npd) + tqd.var(ddof=1) / len(tqd))
    sek = np.sqrt(npk.var(ddof=1) / len(npk) + tqk.var(ddof=1) / len(tqk))
    ppl_tq = float(rows[0]["ppl_ref"])
    L = ["# Closed loop against an independent implementation (SmolLM2-135M, turbo-mse "
         f"{a.bits} bits)", "",
         f"`python3 eval/closed_loop_check.py --tokens {a.tokens} --seeds {a.seeds} --bits {a.bits}`. Text: the first "
         f"{res['tokens']} tokens of datasets/text/tale-of-two-cities.txt; every K and V row of every layer quantized "
         "when written (the prompt's included: `--prefill quantized`, no recent window), dense rotation, Beta "
         "codebook, norms in fp16. PPL over the predictions of tokens 1..T-1; KL = mean KL(p_exact ‖ p_quantized).", "",
         "- **tq**: `tq perplexity` (lib/model float32 pass, lib/kvquant write hook, lib/turbo quantizer; rotations "
         "from tq's PCG streams).",
         "- **NumPy**: `scripts/dump_kv.py --gguf ... --closed-loop BITS --seeds LIST`: its float64 pass with a "
         "TurboQuant-mse cache written from the paper's Algorithm 1 (Haar rotation by QR of a Gaussian matrix from "
         "numpy's PCG64, Lloyd-Max codebook of the Beta coordinate density computed on a grid, fp16 norm); no code "
         "shared with tq.", "",
         f"Exact cache: PPL {res['ppl_ref']:.4f} (NumPy, float64) and {ppl_tq:.4f} (tq, float32): "
         f"{100 * (ppl_tq / res['ppl_ref'] - 1):+.4f}%.", "",
         "| seed | NumPy ΔPPL | NumPy KL | tq ΔPPL | tq KL |", "|---:|---:|---:|---:|---:|"]
    for s, r in zip(seeds, res["runs"]):
        L.append(f"| {s} | {r['dppl_pct']:+.2f}% | {r['kl']:.4f} | {float(tq[s]['dppl_pct']):+.2f}% | "
                 f"{float(tq[s]['kl']):.4f} |")
    L += [f"| mean ± sd | {npd.mean():+.2f}% ± {npd.std(ddof=1):.2f} | {npk.mean():.4f} ± {npk.std(ddof=1):.4f} | "
          f"{tqd.mean():+.2f}% ± {tqd.std(ddof=1):.2f} | {tqk.mean():.4f} ± {tqk.std(ddof=1):.4f} |", "",
          f"Difference of the means (tq − NumPy): ΔPPL {tqd.mean() - npd.mean():+.2f} points = "
          f"{(tqd.mean() - npd.mean()) / se:+.2f} standard errors (se {se:.2f}, from each side's seed-to-seed sd / "
          f"√{len(seeds)}); KL {tqk.mean() - npk.mean():+.4f} nats = {(tqk.mean() - npk.mean()) / sek:+.2f} standard "
          "errors. " + verdict(tqd.mean() - npd.mean(), se, tqk.mean() - npk.mean(), sek),
          "", "The short version of this check (64 tokens, 4 seeds, against a committed golden) runs in `make test`: "
          "tests/py/test_closed_loop_numpy.py."]
    out = os.path.join(ROOT, "results", "closed_loop", "numpy_check.md")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(L) + "\n")
    os.replace(out + ".tmp", out)
    print("\n".join(L))


if __name__ == "__main__":
    main()
