#!/usr/bin/env python3
"""include_graph.py: the #include graph of lib/, cmd/, eval/ and tests/, checked against the layering rules of
docs/ARCHITECTURE.md and drawn as a PNG (`make graph`).

Rules (each violation is one line on stderr, exit 1):
  1. nothing in lib/ includes a file of cmd/, eval/ or tests/ (the library stands alone);
  2. cmd/ and eval/ include lib/ only through public headers. A library header is internal when its opening comment
     says "Internal to the library" (lib/turbo_simd.h) or it is a CUDA header (.cuh, lib/cuda/common.cuh); every
     other lib/*.h and lib/cuda/tq_cuda.h is public. tests/ may include internal headers: unit tests test internals;
  3. every quoted include resolves to a file the way the Makefile's -I flags do (the including file's folder, then
     lib/; cmd/ and the fuzz harnesses also see cmd/, tests/ also sees tests/). A name the flags do not reach is
     looked up in cmd/, eval/, tests/ and lib/ too, so the graph shows where it points and rule 1 names it.

The picture has one node per module (foo.c + foo.h = "foo"), one row per layer — cmd, eval, then lib by depth (a
lib module sits above everything it includes), lib/cuda at the bottom — and tests/ collapsed into one node.
Internal headers' modules are drawn hatched, violating edges red.

usage: include_graph.py [--root DIR] [--check] [-o FILE.png]"""
import argparse
import collections
import os
import re
import sys

SCANNED = ("lib", "cmd", "eval", "tests")
EXTS = (".c", ".h", ".cu", ".cuh", ".cpp")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
INTERNAL_MARK = "Internal to the library"


def source_files(root):
    out = []
    for top in SCANNED:
        for d, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in ("corpus", "golden"))
            out += [os.path.relpath(os.path.join(d, f), root) for f in sorted(files) if f.endswith(EXTS)]
    return out


def search_path(f):
    """Folders a quoted include of file f is looked up in, in order (the Makefile: -Ilib, -Icmd for cmd/, -Itests for
    tests/; the including file's own folder first, as the C preprocessor does)."""
    own = os.path.dirname(f)
    path = [own]
    if f.startswith(("cmd/", "tests/fuzz/")):  # tests/fuzz/fuzz.mk builds the harnesses with -Icmd
        path.append("cmd")
    if f.startswith("tests/"):
        path.append("tests")
    path.append("lib")
    return path


def resolve(root, f, name):
    """(path, reachable): the file the build's -I flags find, else one of that name anywhere in the scanned folders
    (reachable False: an include the build could not compile, reported under rule 1 or 3), else (None, False)."""
    for d in search_path(f):
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(root, p)):
            return p, True
    for d in ("cmd", "eval", "tests", "lib"):
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(root, p)):
            return p, False
    return None, False


def is_internal(root, h):
    if not h.startswith("lib/"):
        return False
    if h.endswith(".cuh"):
        return True
    with open(os.path.join(root, h), encoding="utf-8", errors="replace") as fh:
        head = fh.read(2000)
    m = re.match(r"\s*/\*(.*?)\*/", head, re.S)
    return bool(m and INTERNAL_MARK in " ".join(re.sub(r"\n\s*\*", " ", m.group(1)).split()))


def layer(f):
    return "lib/cuda" if f.startswith("lib/cuda/") else f.split("/")[0]


def scan(root):
    """(edges [(from_file, to_file)], unresolved [(file, name)], internal headers set)"""
    edges, unresolved = [], []
    files = source_files(root)
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for name in INCLUDE.findall(text):
            to, reachable = resolve(root, f, name)
            if to is not None:
                edges.append((f, to))
            if not reachable and not (to and layer(f) in ("lib", "lib/cuda") and layer(to) not in ("lib", "lib/cuda")):
                unresolved.append((f, name))  # (a lib/ include of cmd/ etc. is reported once, under rule 1)
    internal = {f for f in files if f.startswith("lib/") and f.endswith((".h", ".cuh")) and is_internal(root, f)}
    return files, edges, unresolved, internal


def violations(edges, unresolved, internal):
    bad = []
    for a, b in edges:
        la, lb = layer(a), layer(b)
        if la in ("lib", "lib/cuda") and lb not in ("lib", "lib/cuda"):
            bad.append((a, b, f"{a} includes {b}: lib/ must not include {lb}/ (rule 1)"))
        elif la in ("cmd", "eval") and b in internal:
            bad.append((a, b, f"{a} includes {b}, a header internal to the library; {la}/ may use public headers "
                              "only (rule 2)"))
    for f, name in unresolved:
        bad.append((f, None, f'{f} includes "{name}", which the build\'s include path does not resolve (rule 3)'))
    return bad


def module(f):
    if f.startswith("tests/"):
        return "tests/*"
    return os.path.splitext(f)[0]


def draw(files, edges, internal, bad, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    mods = sorted({module(f) for f in files})
    medges = collections.Counter()
    for a, b in edges:
        ma, mb = module(a), module(b)
        if ma != mb:
            medges[(ma, mb)] += 1
    bad_m = {(module(a), module(b)) for a, b, _ in bad if b}
    internal_m = {module(h) for h in internal}
    # lib depth: longest chain of lib includes below a module (tq = 0), so every lib edge points down
    deps = collections.defaultdict(set)
    for ma, mb in medges:
        deps[ma].add(mb)
    depth = {}

    def dep(m, seen=()):
        if m in depth:
            return depth[m]
        below = [x for x in deps[m] if layer(x + "/") in ("lib",) and x.startswith("lib/") and not
                 x.startswith("lib/cuda/") and x not in seen]
        depth[m] = 1 + max((dep(x, seen + (m,)) for x in below), default=-1)
        return depth[m]

    lib = [m for m in mods if m.startswith("lib/") and not m.startswith("lib/cuda/")]
    for m in lib:
        dep(m)
    top = max((depth[m] for m in lib), default=0)
    rows = collections.OrderedDict()
    cmd_shared = {module(b) for a, b in edges if a.startswith("cmd/") and b.startswith("cmd/")}
    rows["cmd/ commands"] = [m for m in mods if m.startswith("cmd/") and m not in cmd_shared]
    rows["cmd/ shared"] = [m for m in mods if m in cmd_shared]
    rows["eval/, tests/"] = [m for m in mods if m.startswith("eval/")] + ["tests/*"]
    for lv in range(top, -1, -1):
        rows[f"lib/ level {lv}"] = sorted(m for m in lib if depth[m] == lv)
    rows["lib/cuda/"] = [m for m in mods if m.startswith("lib/cuda/")]
    rows = collections.OrderedDict((k, v) for k, v in rows.items() if v)
    width = max(len(v) for v in rows.values())

    def place(k, i):  # each row spread over the full width
        step = min(2.2, (width - 1) / max(len(rows[k]) - 1, 1)) if len(rows[k]) > 1 else 0
        for j, m in enumerate(rows[k]):
            pos[m] = ((j - (len(rows[k]) - 1) / 2) * step, -i)

    # order each row by the mean position of what it connects to (fewer crossings), a few sweeps
    pos = {}
    names = list(rows)
    for i, k in enumerate(names):
        place(k, i)
    for _ in range(4):
        for i, k in enumerate(names):
            def key(m):
                xs = [pos[b][0] for (a, b) in medges if a == m and b in pos and a != "tests/*"] + \
                     [pos[a][0] for (a, b) in medges if b == m and a in pos and a != "tests/*"]
                return sum(xs) / len(xs) if xs else 0.0
            rows[k] = sorted(rows[k], key=key)
            place(k, i)
    fig, ax = plt.subplots(figsize=(max(12, 1.2 * width), 1.1 * len(rows) + 1.5), dpi=110)
    xscale = 1.3
    edge_color = {"cmd": "#1f5fa8", "eval": "#b07a00", "lib": "0.45", "lib/cuda": "#a83232"}
    for (a, b), n in medges.items():
        if a not in pos or b not in pos or a == "tests/*":
            continue
        (x0, y0), (x1, y1) = pos[a], pos[b]
        red = (a, b) in bad_m
        lay = "lib/cuda" if a.startswith("lib/cuda/") else a.split("/")[0]
        ax.add_patch(FancyArrowPatch((x0 * xscale, y0 - 0.13), (x1 * xscale, y1 + 0.15), arrowstyle="-|>",
                                     mutation_scale=7, lw=2.2 if red else 0.7, color="red" if red else
                                     edge_color.get(lay, "0.4"), alpha=0.95 if red else 0.4, zorder=3 if red else 1,
                                     connectionstyle="arc3,rad=0.08" if y0 == y1 else "arc3,rad=0.0"))
    colors = {"cmd": "#cfe2f3", "eval": "#fff2cc", "tests": "#eeeeee", "lib": "#d9ead3", "lib/cuda": "#f4cccc"}
    for m, (x, y) in pos.items():
        lay = "lib/cuda" if m.startswith("lib/cuda/") else m.split("/")[0]
        label = m.split("/")[-1] if m != "tests/*" else "tests/* (edges not drawn)"
        ax.text(x * xscale, y, label, ha="center", va="center", fontsize=8.5, zorder=4,
                bbox=dict(boxstyle="round,pad=0.3", fc=colors.get(lay, "white"),
                          ec="red" if any(m in e for e in bad_m) else "0.3",
                          hatch="////" if m in internal_m else None, lw=0.8))
    for i, k in enumerate(names):
        ax.text(-(width / 2 + 0.9) * xscale, -i, k, ha="right", va="center", fontsize=10, weight="bold")
    ax.set_xlim(-(width / 2 + 3.0) * xscale, (width / 2 + 0.6) * xscale)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.axis("off")
    verdict = "rules hold" if not bad else f"{len(bad)} violation(s), in red"
    ax.set_title(f"tq include graph ({verdict}): an arrow A -> B when a file of module A includes a header of B\n"
                 f"{len(medges)} module edges: blue from cmd/, orange from eval/, grey inside lib/, red from lib/cuda/; "
                 "hatched: a header internal to lib/\nlib/ levels: a module sits above everything it includes; "
                 "level 0 includes nothing", fontsize=10)
    fig.tight_layout()
    tmp = out + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--check", action="store_true", help="check the rules only, draw nothing")
    ap.add_argument("-o", dest="out", default=None, help="the PNG (default docs/include_graph.png)")
    a = ap.parse_args(argv)
    root = os.path.abspath(a.root)
    files, edges, unresolved, internal = scan(root)
    bad = violations(edges, unresolved, internal)
    for _, _, msg in bad:
        print("include_graph: " + msg, file=sys.stderr)
    n_cmd = sum(1 for x, y in edges if layer(x) in ("cmd", "eval") and y.startswith("lib/"))
    print(f"include_graph: {len(files)} files, {len(edges)} includes ({n_cmd} from cmd/ and eval/ into lib/), "
          f"internal headers: {', '.join(sorted(internal)) or 'none'}; {len(bad)} violation(s)")
    if not a.check:
        out = a.out or os.path.join(root, "docs", "include_graph.png")
        draw(files, edges, internal, bad, out)
        print(f"include_graph: wrote {os.path.relpath(out, root) if out.startswith(root) else out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
