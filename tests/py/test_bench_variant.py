#!/usr/bin/env python3
"""test_bench_variant.py: `tq bench --variant KEY=NAME[,KEY=NAME]` — the kernel variants are explicit library settings
(tq_simd_set, tq_cuda_variant_set), not environment variables. Checked through the CLI: simd=off runs the portable
path and says so in the header and the CSV; simd=auto names what this CPU runs (avx512 exactly when /proc/cpuinfo has
every feature the AVX-512 code needs); simd=avx512 is refused (exit 2) on a CPU without them; TQ_SIMD in the
environment changes nothing; malformed lists, unknown keys and unknown names exit 2 naming them; a CUDA key in a
build without CUDA exits 1 with "built without CUDA"."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TQ = os.environ.get("TQ") or os.path.join(ROOT, "tq")
npass = nfail = 0
AVX512_FLAGS = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vbmi", "bmi2")


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def bench(*args, env=None):
    p = subprocess.run([TQ, "bench", "--device", "cpu", "--encode-vectors", "256", *args], capture_output=True,
                       text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def main():
    with open("/proc/cpuinfo") as f:
        flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    have = all(x in flags for x in AVX512_FLAGS)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TQ_TMP")) as t:
        csv = os.path.join(t, "b.csv")
        rc, out, err = bench("--variant", "simd=off", "-o", csv)
        check(rc == 0 and out.startswith("# tq bench --device cpu: simd off; --variant simd=off"),
              f"simd=off: rc {rc}, header {out.splitlines()[:1]}, {err}")
        with open(csv) as f:
            lines = f.read().splitlines()
        check(lines[:2] == ["# simd: off", "kind,config,vectors,ms,mbs"], f"CSV head {lines[:2]}")
        check(sum(l.startswith("encode,") for l in lines) == 5, f"{len(lines)} CSV lines: {lines}")
        want = "avx512" if have else "off"
        rc, out, err = bench("--variant", "simd=auto")
        check(rc == 0 and out.startswith(f"# tq bench --device cpu: simd {want};"),
              f"simd=auto on a CPU {'with' if have else 'without'} AVX-512: {out.splitlines()[:1]} {err}")
        rc, out, err = bench()
        check(rc == 0 and out.startswith(f"# tq bench --device cpu: simd {want}\n"), f"default: {out.splitlines()[:1]}")
        env = dict(os.environ, TQ_SIMD="avx2")  # the old switch: the library no longer reads it
        rc, out, err = bench(env=env)
        check(rc == 0 and out.startswith(f"# tq bench --device cpu: simd {want}\n"),
              f"TQ_SIMD=avx2 in the environment changed the variant: {out.splitlines()[:1]}")
        rc, out, err = bench("--variant", "simd=avx512")
        if have:
            check(rc == 0 and out.startswith("# tq bench --device cpu: simd avx512;"), f"simd=avx512: {rc} {err}")
        else:
            check(rc == 2 and "lacks AVX-512" in err, f"simd=avx512 without AVX-512: rc {rc}, {err!r}")
        for args, code, msg in [(["simd=fast"], 2, "unknown simd variant 'fast'"),
                                (["gpu=x"], 2, "unknown key 'gpu'"),
                                (["simd"], 2, "'simd' is not KEY=NAME"),
                                (["simd=off,=x"], 2, "'=x' is not KEY=NAME"),
                                (["simd=off,"], 2, "--variant")]:
            rc, out, err = bench("--variant", *args)
            check(rc == code and msg in err and not out, f"--variant {args}: rc {rc} (want {code}), {err!r}")
        ver = subprocess.run([TQ, "--version"], capture_output=True, text=True).stdout
        if "cuda no" in ver:
            for kv in ("attn=t64", "encode=v1"):
                rc, out, err = bench("--variant", kv)
                check(rc == 1 and "built without CUDA" in err, f"--variant {kv} without CUDA: rc {rc}, {err!r}")
        else:
            rc, out, err = bench("--variant", "attn=nope")
            check(rc == 2 and "nope" in err, f"--variant attn=nope with CUDA: rc {rc}, {err!r}")
    print(f"{npass} passed, {nfail} failed, 0 skipped")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
