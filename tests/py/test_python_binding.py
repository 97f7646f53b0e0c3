#!/usr/bin/env python3
"""test_python_binding.py: every function of the tq Python package (python/tq over build/libtq.so) against the tq
command's numbers on the same data. The binding calls the same library code the CLI does, so agreement is exact:
codes bytes equal, reconstructions equal bit for bit (after the float16 rounding tq dequantize writes), and every
number equal to the last digit the CLI prints (%.9g in CSV / JSON). Also: the ctypes structures have the C sizes
(a C program compiled here prints sizeof), and a fresh venv installs the package (skipped when pip cannot reach
its build requirements: this test must not depend on the network). Skips cleanly without pandas or libtq.so."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
TQ = os.environ.get("TQ") or os.path.join(ROOT, "tq")
D = os.path.join(ROOT, "datasets", "smollm2-135m.h5")
npass = nfail = nskip = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def skip(msg):
    global nskip
    nskip += 1
    print("SKIP " + msg, file=sys.stderr)


def done():
    print(f"{npass} passed, {nfail} failed, {nskip} skipped")
    sys.exit(1 if nfail else 0)


try:
    import numpy as np
    import tq
except ImportError as e:
    skip(f"tq package: {e}")
    done()
try:
    import pandas as pd
except ImportError:
    pd = None


def run(*args):
    r = subprocess.run([TQ, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tq {' '.join(map(str, args))}: {r.stderr}")
    return r.stdout


def g9(x):
    """A number as the CLI prints it in CSV / JSON: %.9g, absent (NaN) empty."""
    return "" if x != x else "%.9g" % x


def structs():
    """ctypes layouts against the C compiler's sizeof/offsetof of the same structures."""
    import ctypes as C
    from tq import _lib as L
    pairs = [("tq_qparams", L.QParams), ("tq_codes", L.Codes), ("tq_metrics", L.Metrics),
             ("tq_metrics_opts", L.MetricsOpts), ("tq_dump_meta", L.DumpMeta), ("tq_layer", L.Layer),
             ("tq_codes_meta", L.CodesMeta), ("tq_codes_layer", L.CodesLayer), ("tq_eval_config", L.EvalConfig),
             ("tq_eval_axes", L.EvalAxes), ("tq_eval_configs", L.EvalConfigs), ("tq_eval_input", L.EvalInput),
             ("tq_synth_params", L.SynthParams), ("tq_eval_row", L.EvalRow), ("tq_eval_rows", L.EvalRows),
             ("tq_eval_opts", L.EvalOpts), ("tq_sens_metric", L.SensMetric), ("tq_sens_opts", L.SensOpts),
             ("tq_sens_unit", L.SensUnit), ("tq_sens_result", L.SensResult), ("tq_format", L.Format),
             ("tq_kvq_opts", L.KvqOpts), ("tq_ppl_result", L.PplResult)]
    src = '#include <stdio.h>\n#include <stddef.h>\n#include "evaluate.h"\n#include "codes.h"\n#include "kvquant.h"\nint main(void){\n'
    src += "".join(f'printf("%zu\\n", sizeof({c}));\n' for c, _ in pairs)
    src += 'printf("%zu %zu %zu %zu\\n", offsetof(tq_eval_opts, sched), offsetof(tq_eval_opts, progress), ' \
           'offsetof(tq_sens_opts, device), offsetof(tq_model_config, head_dim));\nreturn 0;}\n'
    with tempfile.TemporaryDirectory() as t:
        open(f"{t}/s.c", "w").write(src)
        flags = subprocess.run(["pkg-config", "--cflags", "hdf5"], capture_output=True, text=True).stdout.split()
        r = subprocess.run(["cc", "-std=c11", f"-I{ROOT}/lib", *flags, f"{t}/s.c", "-o", f"{t}/s"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            skip("no C compiler for the layout check: " + r.stderr[:200])
            return
        out = subprocess.run([f"{t}/s"], capture_output=True, text=True).stdout.split("\n")
    for (name, cls), line in zip(pairs, out):
        check(int(line) == C.sizeof(cls), f"sizeof({name}) {line}, ctypes {C.sizeof(cls)}")
    offs = [int(x) for x in out[len(pairs)].split()]
    check(offs == [L.EvalOpts.sched.offset, L.EvalOpts.progress.offset, L.SensOpts.device.offset,
                   L.ModelConfig.head_dim.offset],
          f"offsets {offs}")


def quantize_every_method(t):
    """tq.quantize of a dump slice == the codes tq quantize stores (bytes of every section), for every method and
    the options the CLI takes; tq.dequantize == what tq dequantize writes (float16 of the same floats); roundtrip
    == dequantize(quantize); read_codes meta == the options given."""
    dump = tq.read_dump(D)
    L0 = dump.layer(1)
    cases = [("fp16", None, {}), ("int8", None, {}), ("kivi", 2, {"group": 16}), ("turbo-mse", 3, {}),
             ("turbo-mse", 2, {"rotation": "hadamard", "codebook": "gaussian", "center": True}),
             ("turbo-mse", 2, {"outliers": 4}), ("kivi", 3, {"residual": 16}),
             ("turbo-prod", 3, {"norm_fp32": True}), ("qjl", 1, {"qjl_m": 32}), ("polar", 3, {}),
             ("polar", 3, {"polar_bits": (3, 2, 2, 2)}), ("turbo-mse", 2, {"codebook": "empirical", "seed": 7})]
    flag = {"rotation": "--rotation", "codebook": "--codebook", "outliers": "--outliers", "group": "--group",
            "qjl_m": "--qjl-m", "seed": "--seed", "residual": "--residual"}
    for i, (m, b, opts) in enumerate(cases):
        args = ["quantize", D, "--method", m, "--layers", 1, "-o", f"{t}/c{i}.h5"]
        if b is not None:
            args += ["--bits", b]
        for k, v in opts.items():
            if k == "polar_bits":
                args += ["--polar-bits", ",".join(map(str, v))]
            elif k == "norm_fp32":
                args += ["--norms", "fp32"]
            elif k == "center":
                args += ["--center"]
            else:
                args += [flag[k], v]
        try:
            run(*args)
        except RuntimeError as e:
            check(False, f"{m} {opts}: {e}")
            continue
        run("dequantize", f"{t}/c{i}.h5", "-o", f"{t}/r{i}.h5")
        cf = tq.read_codes(f"{t}/c{i}.h5")
        stored = cf.layer(0)
        rec = tq.read_dump(f"{t}/r{i}.h5").layer(0)
        p = tq.params(m, b, **opts)
        check(cf.meta["keys"] == p, f"{m} {opts}: codes meta {cf.meta['keys']} vs params {p}")
        for h in range(3):
            for tensor, X in (("keys", L0["keys"][h]), ("values", L0["values"][h])):
                c = tq.quantize(X, params=p, layer=1, head=h, tensor=tensor)
                s = stored[tensor][h]
                same = list(c.sections) == list(s.sections) and all(
                    c.sections[k].tobytes() == s.sections[k].tobytes() for k in c.sections)
                check(same, f"{m} {opts} {tensor} head {h}: sections differ from tq quantize's")
                xh = tq.dequantize(c)
                check(np.array_equal(xh.astype(np.float16).astype(np.float32), rec[tensor][h]),
                      f"{m} {opts} {tensor} head {h}: dequantize differs from tq dequantize")
                if h == 0:
                    xr, bt = tq.roundtrip(X, params=p, layer=1, head=h, tensor=tensor)
                    check(np.array_equal(xr, xh) and bt == c.bits_total,
                          f"{m} {opts} {tensor}: roundtrip differs from dequantize(quantize)")
                    check(c.n == X.shape[0] and c.d == X.shape[1], f"{m}: shape")
        check(np.array_equal(rec["queries"], L0["queries"]), f"{m}: queries carried")
        cf.close()
    # bad parameters raise with the library's message
    try:
        tq.quantize(L0["keys"][0], "turbo-mse", 9)
        check(False, "bits 9 accepted")
    except ValueError as e:
        check("9" in str(e), f"bits 9 message: {e}")
    try:
        tq.params("nope", 2)
        check(False, "unknown method accepted")
    except ValueError as e:
        check("unknown method 'nope'" in str(e), str(e))


def read_dump_vs_h5py():
    import h5py
    with tq.read_dump(D) as d, h5py.File(D, "r") as f:
        check(d.meta["model"] == f.attrs["model"], "dump model")
        check(d.n_layers == int(f.attrs["n_layers"]), "n_layers")
        ly = d.layer(29, tokens=100)
        for n in ("keys", "values", "queries"):
            check(np.array_equal(ly[n], f[f"layer_029/{n}"][:, :100].astype(np.float32)), f"layer 29 {n}")
        check(d.attn(29)["scale"] == 0.125, "attn scale")


def sweep_vs_cli(t):
    """tq.sweep == tq sweep --format csv, cell for cell (numbers as %.9g), in both shapes and at each level."""
    common = dict(methods="int8,turbo-prod,polar,kivi", bits="2,3", layers="0,17", heads="1,2", tokens=48,
                  values="kivi:2")
    cli = ["--methods", common["methods"], "--bits", common["bits"], "--layers", "0,17", "--heads", "1,2",
           "--tokens", 48, "--values", "kivi:2", "--format", "csv"]
    for agg in ("none", "layer", "dump"):
        for wide in (False, True):
            df = tq.sweep(D, aggregate=agg, wide=wide, threads=2, **common)
            text = run("sweep", D, *cli, "--aggregate", agg, *(["--wide"] if wide else []))
            rows = list(csv.DictReader(io.StringIO(text)))
            check(list(df.columns) == list(rows[0].keys()), f"{agg} wide={wide}: columns")
            check(len(df) == len(rows), f"{agg} wide={wide}: {len(df)} rows, cli {len(rows)}")
            bad = 0
            for (_, a), b in zip(df.iterrows(), rows):
                for c in df.columns:
                    v = a[c]
                    s = v if isinstance(v, str) else str(int(v)) if (tq.SCHEMA_WIDE if wide else tq.SCHEMA)[c] == \
                        "int" else g9(float(v))
                    bad += s != b[c]
            check(bad == 0, f"{agg} wide={wide}: {bad} cells differ from the CLI")
            check(all(str(df[c].dtype) == "int64" for c in ("layer", "window", "kv_head")), "int id columns")
    # synthetic inputs, keys only
    df = tq.sweep(synthetic="gaussian,rope", layers=2, heads=2, tokens=64, dim=32, methods="turbo-mse,qjl",
                  bits="2,3", seed=5, values="none")
    rows = list(csv.DictReader(io.StringIO(run(
        "sweep", "--synthetic", "gaussian,rope", "--layers", 2, "--heads", 2, "--tokens", 64, "--dim", 32,
        "--methods", "turbo-mse,qjl", "--bits", "2,3", "--seed", 5, "--values", "none", "--format", "csv"))))
    check(len(df) == len(rows) and all(g9(a) == b["attn_kl"] for a, b in zip(df["attn_kl"], rows)),
          "synthetic sweep equals the CLI")
    seen = []
    tq.sweep(D, methods="int8", layers="0", tokens=16, progress=lambda lab, d, n: seen.append((d, n)))
    check(seen and seen[-1][0] == seen[-1][1], f"progress callback {seen[-3:]}")


def metrics_vs_cli():
    """tq.metrics on a slice quantized with tq.roundtrip == the CLI's slice row."""
    rows = list(csv.DictReader(io.StringIO(run("sweep", D, "--methods", "turbo-mse", "--bits", 3, "--layers", 4,
                                               "--tokens", 64, "--format", "csv"))))
    ly = tq.read_dump(D).layer(4, tokens=64)
    G = ly["queries"].shape[0] // ly["keys"].shape[0]
    for h in range(3):
        p = tq.params("turbo-mse", 3)
        kh, _ = tq.roundtrip(ly["keys"][h], params=p, layer=4, head=h, tensor="keys")
        vh, _ = tq.roundtrip(ly["values"][h], params=p, layer=4, head=h, tensor="values")
        m = tq.metrics(ly["keys"][h], kh, ly["queries"][h * G:(h + 1) * G], ly["values"][h], vh, layer=4, head=h,
                       **{k: ly["attn"][k] for k in ("window", "scale", "softcap")})
        for tensor in ("keys", "values"):
            r = [x for x in rows if x["scope"] == "slice" and x["kv_head"] == str(h) and x["tensor"] == tensor][0]
            bad = [c for c in tq.metric_names if g9(m[tensor][c]) != r[c]]
            check(not bad, f"metrics head {h} {tensor}: {bad}")


def sensitivity_vs_cli(t):
    run("sensitivity", D, "--method", "turbo-mse", "--bits", "2-4", "--tokens", 48, "--per-head", "-o",
        f"{t}/s.json")
    js = json.load(open(f"{t}/s.json"))
    df = tq.sensitivity(D, "turbo-mse", "2-4", tokens=48, per_head=True, threads=2)
    check(len(df) == 3 * len(js["rows"]), f"sensitivity rows {len(df)} vs {len(js['rows'])} units x 3")
    bad = 0
    for i, u in enumerate(js["rows"]):
        for j in range(3):
            r = df.iloc[3 * i + j]
            bad += (r["layer"] != u["layer"] or r["kv_head"] != u["head"] or g9(r["value"]) != g9(u["metric"][j])
                    or g9(r["bits_total"]) != g9(u["bits_total"][j]))
    check(bad == 0, f"sensitivity: {bad} entries differ from tq sensitivity's JSON")


def perplexity_vs_cli():
    """tq.perplexity == tq perplexity --format csv on SmolLM2 (40 tokens, two cache configurations): every cell."""
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "get_models.sh"), "smollm2"], capture_output=True,
                       text=True)
    model = r.stdout.strip()
    if r.returncode != 0 or not os.path.exists(model):
        skip("perplexity: no SmolLM2 model (scripts/get_models.sh)")
        return
    text = os.path.join(ROOT, "datasets", "text", "tale-of-two-cities.txt")
    cli = list(csv.DictReader(io.StringIO(run("perplexity", model, "--text", text, "--tokens", 40, "--methods",
                                              "int8,turbo-mse", "--bits", 2, "--recent", "0,16", "--format", "csv"))))
    df = tq.perplexity(model, text, tokens=40, methods="int8,turbo-mse", bits="2", recent="0,16")
    check(len(df) == len(cli) == 4, f"perplexity rows {len(df)} vs {len(cli)}")
    bad = 0
    for (_, a), b in zip(df.iterrows(), cli):
        for c in df.columns:
            v = a[c]
            bad += (g9(v) if isinstance(v, float) else str(v)) != b[c]
    check(bad == 0, f"perplexity: {bad} cells differ from the CLI")


def torch_tensors():
    try:
        import torch
    except ImportError:
        skip("torch not installed: torch tensors untested here")
        return
    x = torch.randn(32, 64)
    c = tq.quantize(x, "turbo-mse", 2)
    check(np.array_equal(tq.dequantize(c), tq.dequantize(tq.quantize(x.numpy(), "turbo-mse", 2))), "torch input")


def fresh_venv(t):
    """python3 -m venv + pip install ./python + import tq, outside the source tree."""
    if os.environ.get("TQ_SKIP_VENV") == "1":
        skip("fresh venv: TQ_SKIP_VENV=1")
        return
    v = f"{t}/venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", v], capture_output=True, text=True)
    if r.returncode != 0:
        skip("python3 -m venv unavailable: " + r.stderr[:200])
        return
    env = dict(os.environ)
    env.pop("TQ_LIB", None)
    r = subprocess.run([f"{v}/bin/pip", "install", "-q", "--timeout", "20", os.path.join(ROOT, "python")],
                       capture_output=True, text=True, env=env, cwd=t)
    if r.returncode != 0:
        net = any(s in r.stderr for s in ("Could not find a version", "No matching distribution", "Failed to establish",
                                          "NewConnectionError", "Temporary failure", "Network is unreachable",
                                          "bdist_wheel"))
        if net:
            skip("fresh venv: pip cannot fetch the build requirements (offline)")
        else:
            check(False, "pip install ./python: " + r.stderr[-500:])
        return
    r = subprocess.run([f"{v}/bin/python", "-c", "import tq, numpy as np; c = tq.quantize(np.ones((4, 16)), "
                        "'int8'); print(tq._lib.path, tq.dequantize(c)[0, 0])"], capture_output=True, text=True,
                       env=env, cwd=t)
    check(r.returncode == 0 and "site-packages/tq/libtq.so 1.0" in r.stdout,
          f"import tq in the venv: {r.stdout} {r.stderr[-300:]}")


def main():
    if not os.path.exists(TQ):
        skip("no tq binary")
        done()
    structs()
    with tempfile.TemporaryDirectory() as t:
        quantize_every_method(t)
        read_dump_vs_h5py()
        metrics_vs_cli()
        torch_tensors()
        if pd is None:
            skip("pandas not installed: tq.sweep / tq.sensitivity untested (scripts/deps.sh installs it)")
        else:
            sweep_vs_cli(t)
            sensitivity_vs_cli(t)
            perplexity_vs_cli()
        fresh_venv(t)
    done()


if __name__ == "__main__":
    main()
