#!/usr/bin/env python3
"""check_paper.py NEW_DIR: every paper table eval/repro regenerated into NEW_DIR against the committed one, within the
tolerance each kind of number carries. Used by `make repro-check` (CI: .ci/run) after `eval/repro --quick`.

References: the quick-mode tables committed in tests/golden/repro/. The dataset tables (4, 5, 7, 8, 9) are
deterministic functions of the bundled dump and the seeds: compared exactly (Markdown and CSV). The Monte Carlo tables
(1, 2, 3, 6; CSV) are compared by their standard errors: each estimate within 4 combined standard errors of the
committed one (|a - b| <= 4 sqrt(se_a^2 + se_b^2): a change that redraws the samples passes with a 6e-5 two-sided
chance per number of a false failure, a change that moves the estimator fails), histogram shares by their binomial
error, every other column exactly. Timing columns are not compared. Exit 1 naming every difference."""
import csv
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 4.0  # standard errors allowed
SE_OF = {"tq": "se", "bias": "bias_se"}           # an estimate -> its standard-error column
SKIP = {"n", "cpu_s", "vectors_per_s", "count"}   # sample sizes differ between quick and full; timings; hist: below
EXACT_DIR = os.path.join(ROOT, "tests/golden/repro")
MC_TABLES = ("table1", "table2", "table3", "table6")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def se_of(row, col):
    """The standard error of column `col` of a Monte Carlo row, or None when it carries none."""
    if col in SE_OF and SE_OF[col] in row:
        return num(row[SE_OF[col]])
    if col in ("bias",) and "se" in row:  # table2_bias: bias with se
        return num(row["se"])
    if "/" in col:  # a ratio tq/exact, tq/theory: the estimate's se over the exact denominator
        a, b = col.split("/")
        if a in SE_OF and SE_OF[a] in row and num(row.get(b, "")):
            return num(row[SE_OF[a]]) / abs(num(row[b]))
    if col == "slope" and num(row.get("tq", "")) and num(row.get("se", "")):
        # the slope <y,q>/<x,q> is a ratio of the same sample means: its relative error is the estimate's
        return abs(num(row["slope"])) * num(row["se"]) / abs(num(row["tq"]))
    if col == "dmse_check" and num(row.get("n", "")) and num(row.get("d", "")):
        # table 6: the empirical D_mse of n vectors; per-vector errors are ~chi-square-like with relative sd ~
        # sqrt(2/d): se ~ value * sqrt(2 / (n d))
        return num(row[col]) * math.sqrt(2.0 / (num(row["n"]) * num(row["d"])))
    return None


def compare_mc(name, new, ref, bad):
    if len(new) != len(ref):
        bad.append(f"{name}: {len(new)} rows, committed {len(ref)}")
        return
    if name == "table2_hist.csv":
        compare_hist(name, new, ref, bad)
        return
    for i, (a, b) in enumerate(zip(new, ref)):
        for col in b:
            if col in SKIP or col.endswith("se") or col == "bias_se":
                continue
            sa, sb = se_of(a, col), se_of(b, col)
            if sa is None or sb is None:
                if a.get(col) != b[col]:
                    bad.append(f"{name} row {i + 1} {col}: '{a.get(col)}', committed '{b[col]}' (exact)")
                continue
            x, y = num(a[col]), num(b[col])
            tol = K * math.hypot(sa, sb)
            if x is None or y is None or abs(x - y) > tol:
                bad.append(f"{name} row {i + 1} {col}: {a[col]}, committed {b[col]} (tolerance {tol:.3g}: {K:g} se)")


def compare_hist(name, new, ref, bad):
    """Histograms: the bins exactly, each bin's share of its (method, bits) group within 4 binomial standard errors."""
    def groups(rs):
        g = {}
        for r in rs:
            g.setdefault((r["method"], r["bits"]), []).append(r)
        return g
    gn, gr = groups(new), groups(ref)
    for key in gr:
        a, b = gn.get(key, []), gr[key]
        na, nb = sum(int(r["count"]) for r in a), sum(int(r["count"]) for r in b)
        for ra, rb in zip(a, b):
            if (ra["bin_lo"], ra["bin_hi"]) != (rb["bin_lo"], rb["bin_hi"]):
                bad.append(f"{name} {key}: bin [{ra['bin_lo']}, {ra['bin_hi']}], committed [{rb['bin_lo']}, {rb['bin_hi']}]")
                continue
            pa, pb = int(ra["count"]) / max(na, 1), int(rb["count"]) / max(nb, 1)
            p = (int(ra["count"]) + int(rb["count"])) / max(na + nb, 1)
            tol = K * math.sqrt(p * (1 - p) * (1 / max(na, 1) + 1 / max(nb, 1))) + 1 / max(na, 1)
            if abs(pa - pb) > tol:
                bad.append(f"{name} {key} bin [{rb['bin_lo']}, {rb['bin_hi']}]: share {pa:.4f}, committed {pb:.4f}")


def main():
    new_dir = sys.argv[1]
    bad, n = [], 0
    for f in sorted(os.listdir(EXACT_DIR)):
        n += 1
        p, ref = os.path.join(new_dir, f), os.path.join(EXACT_DIR, f)
        if not os.path.exists(p):
            bad.append(f"{f}: not regenerated")
        elif f.startswith(MC_TABLES):
            compare_mc(f, rows(p), rows(ref), bad)
        elif open(p, "rb").read() != open(ref, "rb").read():
            bad.append(f"{f}: differs from tests/golden/repro/{f} (a deterministic table: exact)")
    for b in bad:
        print("DIFFER", b)
    print(f"check_paper: {n} tables, {len(bad)} difference(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
