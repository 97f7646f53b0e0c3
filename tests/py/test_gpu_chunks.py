#!/usr/bin/env python3
"""test_gpu_chunks.py: eval/gpu_chunks.py carries a file in parts: split then join gives back the same bytes (a file
of 2.5 MB of incompressible and compressible halves cut into parts of at most 1 MB, so the cuts fall inside the xz
stream); join lists what is missing (exit 3) until every part is there; a part cut short or flipped, or a checksum
file that disagrees, is refused (exit 1, one message) and leaves nothing at DEST; a second split of the same file
replaces the first's parts."""
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOOL = os.path.join(ROOT, "eval", "gpu_chunks.py")
npass = nfail = 0


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def run(*args):
    p = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def main():
    rng = random.Random(7)
    data = rng.randbytes(1_500_000) + b"tq " * 350_000
    with tempfile.TemporaryDirectory(dir=os.environ.get("TQ_TMP")) as t:
        src, parts, dest = os.path.join(t, "model.gguf"), os.path.join(t, "chunks"), os.path.join(t, "out.gguf")
        with open(src, "wb") as f:
            f.write(data)
        rc, out, err = run("split", src, "--mb", "1", "--dir", parts)
        names = sorted(f for f in os.listdir(parts) if f.startswith("model.gguf.xz."))
        check(rc == 0 and len(names) == 2, f"split: rc {rc}, parts {names}, {err}")
        check(all(os.path.getsize(os.path.join(parts, n)) <= 1_000_000 for n in names), "a part above 1 MB")
        # one part missing: listed, exit 3, nothing written
        last = os.path.join(parts, names[-1])
        os.rename(last, last + ".away")
        rc, out, err = run("join", "model.gguf", dest, "--dir", parts)
        check(rc == 3 and names[-1] in out and not os.path.exists(dest), f"join without a part: rc {rc}, '{out}'")
        os.rename(last + ".away", last)
        rc, out, err = run("join", "model.gguf", dest, "--dir", parts)
        check(rc == 0 and out.strip() == "complete", f"join: rc {rc}, '{out}', '{err}'")
        with open(dest, "rb") as f:
            check(f.read() == data, "joined bytes differ from the file split")
        os.remove(dest)
        # a flipped byte, a part cut short, a wrong checksum: one message, exit 1, no DEST and no temporary
        with open(last, "rb") as f:
            good = f.read()
        for what, bad in (("flipped", good[:100] + bytes([good[100] ^ 1]) + good[101:]), ("short", good[:-10])):
            with open(last, "wb") as f:
                f.write(bad)
            rc, out, err = run("join", "model.gguf", dest, "--dir", parts)
            check(rc == 1 and err.count("\n") == 1 and "cannot join" in err and not os.path.exists(dest)
                  and not os.path.exists(dest + ".tmp"), f"{what} part: rc {rc}, '{err}'")
        with open(last, "wb") as f:
            f.write(good)
        sums = os.path.join(parts, "model.gguf.sha256")
        with open(sums) as f:
            line = f.read()
        with open(sums, "w") as f:
            f.write("0" * 64 + line[64:])
        rc, out, err = run("join", "model.gguf", dest, "--dir", parts)
        check(rc == 1 and "sha256" in err and not os.path.exists(dest), f"wrong checksum: rc {rc}, '{err}'")
        # a second split (larger parts) replaces the first's
        rc, out, err = run("split", src, "--mb", "5", "--dir", parts)
        names = sorted(f for f in os.listdir(parts) if f.startswith("model.gguf.xz."))
        check(rc == 0 and names == ["model.gguf.xz.00"], f"re-split: rc {rc}, parts {names}")
        rc, out, err = run("join", "model.gguf", dest, "--dir", parts)
        with open(dest, "rb") as f:
            check(rc == 0 and f.read() == data, f"join after re-split: rc {rc}, '{err}'")
        rc, out, err = run("split", os.path.join(t, "nope.gguf"), "--dir", parts)
        check(rc == 1 and "cannot read" in err, f"missing file: rc {rc}, '{err}'")
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
