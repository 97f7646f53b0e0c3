#!/usr/bin/env python3
"""test_python_schema.py: the documented output schema (README "Output schema"; tq.SCHEMA / tq.SCHEMA_WIDE) against
every sweep table tq writes (the goldens in tests/golden, CSV and JSON, long and wide) read with pandas: the columns
are exactly the documented ones in order, layer / window / kv_head read as int64, no identifying column holds NaN or
an empty string, scope is slice / layer / dump with -1 exactly where the scope aggregates, and the old traps are gone
(no `head` column shadowing DataFrame.head, int8's params present for groupby). Skips without pandas."""
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
G = os.path.join(ROOT, "tests", "golden")
npass = nfail = nskip = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


try:
    import pandas as pd
    import tq
except ImportError as e:
    print(f"SKIP {e}", file=sys.stderr)
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)

IDS = ["dump", "scope", "layer", "window", "kv_head"]
for name in ("sweep_dump.csv", "sweep_synth.csv", "sweep_synthetic.csv", "sweep_sched.csv", "entropy.csv",
             "sweep_wide.csv", "sweep_dump.json"):
    path = os.path.join(G, name)
    if name.endswith(".json"):
        d = json.load(open(path))
        df = pd.DataFrame(d["rows"], columns=d["columns"])
    else:
        df = pd.read_csv(path)
    wide = "values_method" in df.columns
    schema = tq.SCHEMA_WIDE if wide else tq.SCHEMA
    check(list(df.columns) == list(schema), f"{name}: columns {list(df.columns)}")
    check("head" not in df.columns and callable(df.head), f"{name}: a 'head' column")
    for c, t in schema.items():
        if t == "int":
            check(str(df[c].dtype) == "int64", f"{name}: {c} is {df[c].dtype}, want int64")
    ident = IDS + (["method", "params", "values_method", "values_params"] if wide else ["tensor", "method", "params"])
    for c in ident:
        check(not df[c].isna().any() and not (df[c].astype(str) == "").any(), f"{name}: empty or NaN in {c}")
    check(set(df.scope) <= {"slice", "layer", "dump"} and "dump" in set(df.scope), f"{name}: scopes {set(df.scope)}")
    check(((df.layer == -1) == (df.scope == "dump")).all(), f"{name}: layer -1 exactly on dump rows")
    check(((df.kv_head == -1) == (df.scope != "slice")).all(), f"{name}: kv_head -1 exactly on aggregates")
    # groupby keeps every configuration (int8's params used to be NaN and dropped)
    n_cfg = df.groupby(["method", "params"]).ngroups
    check(n_cfg == len(df[["method", "params"]].drop_duplicates()), f"{name}: groupby drops configurations")
    if (df.method == "int8").any():
        check((df[df.method == "int8"].params == "none").all(), f"{name}: int8 params")
print(f"{npass} passed, {nfail} failed, {nskip} skipped")
sys.exit(1 if nfail else 0)
