#!/usr/bin/env python3
"""test_include_graph.py: the layering rules of docs/ARCHITECTURE.md hold in this tree — scripts/include_graph.py
--check finds no violation (lib/ includes nothing of cmd/, eval/, tests/; cmd/ and eval/ use public lib headers
only; every quoted include resolves) — and the checker can fail: in a scratch tree with one violation of each rule it
reports exactly those, naming the files. Also: every Markdown file a source comment cites (DESIGN.md, TURBOQUANT.md,
"README "Metrics"" aside) exists in the repository, so the documentation is self-contained."""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "include_graph.py")
npass = nfail = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def run(root):
    p = subprocess.run([sys.executable, SCRIPT, "--root", root, "--check"], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


def main():
    # 1. this tree obeys the rules
    rc, out, err = run(ROOT)
    check(rc == 0 and "0 violation(s)" in out, f"the tree breaks the layering rules (rc {rc}):\n{err}")
    check("lib/turbo_simd.h" in out and "lib/cuda/common.cuh" in out,
          f"the internal headers are not the documented two: {out.strip()}")
    print("  " + out.strip().replace("\n", "\n  "), file=sys.stderr)

    # 2. a scratch tree with one violation of each rule, plus allowed includes that must not be reported
    with tempfile.TemporaryDirectory(dir=os.environ.get("TQ_TMP")) as t:
        write(t, "lib/tq.h", "/* tq.h: public. */\n")
        write(t, "lib/fast_simd.h", "/* fast_simd.h: the kernels. Internal to the\n * library. */\n")
        write(t, "lib/cuda/common.cuh", "/* common.cuh: CUDA internals. */\n")
        write(t, "lib/a.c", '#include "tq.h"\n#include "fast_simd.h"\n#include "../cmd/cmd.h"\n')
        write(t, "lib/b.c", '#include "cmd.h"\n')  # does not even compile (no -Icmd for lib/): still rule 1
        write(t, "cmd/cmd.h", "/* cmd.h */\n")
        write(t, "cmd/ok.c", '#include "cmd.h"\n#include "tq.h"\n')
        write(t, "cmd/bad.c", '#include "cmd.h"\n#include "fast_simd.h"\n')
        write(t, "eval/b.c", '#include "cuda/common.cuh"\n#include "nowhere.h"\n')
        write(t, "tests/test_a.c", '#include "fast_simd.h"\n#include "tq.h"\n')
        rc, out, err = run(t)
        lines = [l for l in err.splitlines() if l.startswith("include_graph: ")]
        want = ["lib/a.c includes cmd/cmd.h: lib/ must not include cmd/ (rule 1)",
                "lib/b.c includes cmd/cmd.h: lib/ must not include cmd/ (rule 1)",
                "cmd/bad.c includes lib/fast_simd.h, a header internal to the library",
                "eval/b.c includes lib/cuda/common.cuh, a header internal to the library",
                'eval/b.c includes "nowhere.h", which the build\'s include path does not resolve (rule 3)']
        check(rc == 1, f"violations exit {rc}, want 1")
        for w in want:
            check(any(w in l for l in lines), f"not reported: {w}\ngot:\n{err}")
        check(len(lines) == len(want), f"{len(lines)} violations reported, want {len(want)} (tests/ and lib/ may "
              f"include internal headers, cmd/ may include public ones):\n{err}")
        check("internal headers: lib/cuda/common.cuh, lib/fast_simd.h" in out,
              f"the internal-header marker was not read: {out.strip()}")

    # 3. Markdown files cited in source comments exist in the repository
    have = set()
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x != "build"]
        have.update(f for f in files if f.endswith(".md"))
    cited = {}
    for top in ("lib", "cmd", "eval", "tests", "scripts"):
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                path = os.path.join(d, f)
                if not f.endswith((".c", ".h", ".cu", ".cuh", ".py", ".sh", ".cpp")) or path == os.path.abspath(__file__):
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    # documents are cited by upper-case names (README.md, FORMAT.md, TURBOQUANT.md); FILE.md is a
                    # usage placeholder
                    for name in re.findall(r"\b([A-Z][A-Z0-9_]+\.md)\b", fh.read()):
                        if name != "FILE.md":
                            cited.setdefault(name, os.path.relpath(path, ROOT))
    missing = sorted(n for n in cited if n not in have)
    check(not missing, "cited but not in the repository: " +
          ", ".join(f"{n} (in {cited[n]})" for n in missing))
    check("DESIGN.md" not in cited, f"a source comment still cites DESIGN.md ({cited.get('DESIGN.md')}); "
          "the design lives in docs/ARCHITECTURE.md")
    print(f"{npass} passed, {nfail} failed, 0 skipped")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
