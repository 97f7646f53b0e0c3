#!/usr/bin/env python3
"""bad_dumps.py: writes, with h5py, one small tq-kv dump per way a dump can be wrong (plus the accepted variants),
for tests/cli/test_info.sh. Not a test itself (no test_ prefix). Usage: bad_dumps.py OUTDIR; prints the names."""
import os
import sys

import h5py
import numpy as np

H, HQ, T, D, L = 2, 4, 8, 16, 2


def tensors(layer, dtype=np.float32):
    rng = np.random.default_rng(100 + layer)
    k = rng.standard_normal((H, T, D)).astype(dtype)
    v = rng.standard_normal((H, T, D)).astype(dtype)
    q = rng.standard_normal((HQ, T, D)).astype(dtype)
    return k, v, q


def write(path, break_=None, str_kind="vlen", int_dtype=np.int64, dtype=np.float32, **dsopts):
    """A valid 2-layer dump; `break_` names one thing to get wrong (always in layer 1, so checks run past 0)."""
    with h5py.File(path, "w") as f:
        def s(v):
            if str_kind == "fixed":
                return np.bytes_(v)  # fixed-length, as numpy byte strings are stored
            if str_kind == "vlen-bytes":
                return np.array(v.encode(), dtype=h5py.string_dtype("ascii"))
            return v  # Python str: variable-length UTF-8
        if break_ != "no_format":
            f.attrs["tq_format"] = s({"wrong_format": "llama-kv"}.get(break_, "tq-kv"))
        f.attrs["tq_format_version"] = int_dtype(3 if break_ == "newer_version" else 1)
        f.attrs["model"] = s("h5py-test")
        f.attrs["source"] = s("tests/py/bad_dumps.py")
        f.attrs["rope"] = s("sideways" if break_ == "bad_rope" else "post")
        if break_ == "zero_layers":
            f.attrs["n_layers"] = int_dtype(0)
        elif break_ == "float_layers":
            f.attrs["n_layers"] = float(L)
        elif break_ != "no_n_layers":
            f.attrs["n_layers"] = int_dtype(3 if break_ == "missing_group" else L)
        for layer in range(L):
            g = f.create_group(f"layer_{layer:03d}")
            k, v, q = tensors(layer, dtype)
            bad = layer == 1
            if bad and break_ == "no_keys":
                pass
            elif bad and break_ == "rank2":
                g["keys"] = k.reshape(H, T * D)
            elif bad and break_ == "zero_dim":
                g.create_dataset("keys", shape=(H, T, 0), dtype=dtype)
            elif bad and break_ == "int32":
                g["keys"] = (k * 100).astype(np.int32)
            elif bad and break_ == "huge":
                # 2^33 elements: bigger than tq reads as one dataset; no storage is allocated for it
                g.create_dataset("keys", shape=(64, 1 << 20, 128), dtype=np.float16)
            elif bad and break_ == "overflow":
                # element count 2^63 * ... overflows 64 bits; chunked so HDF5 accepts the shape
                g.create_dataset("keys", shape=(1 << 30, 1 << 30, 1 << 30), dtype=np.float16, chunks=(1, 1, 64))
            elif bad and break_ == "nan":
                k[1, 5, 3] = np.nan
                k[1, 6, 0] = np.nan
                v[0, 2, 2] = np.inf
                g["keys"] = k
            elif bad and break_ == "keys_group":
                g.create_group("keys")
            elif bad and break_ == "huge_f64":
                k[0, 1, 2] = 1e300  # beyond float32: read as +inf
                g["keys"] = k
            else:
                g.create_dataset("keys", data=k, **dsopts)
            if bad and break_ == "values_tokens":
                g["values"] = v[:, : T - 1]
            elif bad and break_ == "values_dim":
                g["values"] = np.concatenate([v, v], axis=2)
            elif break_ != "no_values":
                g["values"] = v if not (bad and break_ == "nan") else v
            if bad and break_ == "queries_tokens":
                g["queries"] = q[:, : T - 2]
            elif bad and break_ == "gqa":
                g["queries"] = q[:3]
            elif break_ != "no_queries":
                g["queries"] = q
            # format-2 attention attributes (on a v1 file too: they are read whatever the version)
            if bad and break_ in ATTN_BREAKS:
                name, val = ATTN_BREAKS[break_]
                g.attrs[name] = val


ATTN_BREAKS = {"neg_window": ("sliding_window", np.int64(-4)), "float_window": ("sliding_window", 2.5),
               "nan_scale": ("attn_scale", np.nan), "zero_scale": ("attn_scale", 0.0),
               "neg_softcap": ("attn_softcap", -30.0), "inf_rope_base": ("rope_base", np.inf),
               "str_scale": ("attn_scale", "0.125")}
BREAKS = list(ATTN_BREAKS) + ["no_format", "wrong_format", "newer_version", "no_n_layers", "zero_layers", "float_layers", "missing_group", "no_keys", "keys_group",
          "rank2", "values_tokens", "values_dim", "queries_tokens", "gqa", "zero_dim", "int32", "huge", "overflow",
          "nan", "bad_rope"]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write(f"{out}/good.h5")
    for b in BREAKS:
        write(f"{out}/{b}.h5", break_=b)
    # accepted variants
    write(f"{out}/fixed_strings.h5", str_kind="fixed")
    write(f"{out}/vlen_bytes.h5", str_kind="vlen-bytes")
    write(f"{out}/int8_attrs.h5", int_dtype=np.int8)
    write(f"{out}/uint16_attrs.h5", int_dtype=np.uint16)
    write(f"{out}/float64.h5", dtype=np.float64)
    write(f"{out}/float16.h5", dtype=np.float16)
    write(f"{out}/key_only.h5", break_="no_values")
    write(f"{out}/float16_be.h5", dtype=np.dtype(">f2"))
    write(f"{out}/float32_be.h5", dtype=np.dtype(">f4"))
    write(f"{out}/gzip.h5", compression="gzip", chunks=(1, 4, 16))
    write(f"{out}/huge_f64.h5", break_="huge_f64", dtype=np.float64)
    # a valid v2 dump: architecture, a windowed layer 0 with every attention attribute, layer 1 without (defaults)
    write(f"{out}/v2.h5")
    with h5py.File(f"{out}/v2.h5", "r+") as f:
        f.attrs["tq_format_version"] = np.int64(2)
        f.attrs["architecture"] = "gemma3"
        g = f["layer_000"]
        g.attrs["sliding_window"] = np.int32(4)
        g.attrs["attn_scale"] = np.float32(0.0625)
        g.attrs["attn_softcap"] = 50.0
        g.attrs["rope_base"] = 10000.0
    # not HDF5 / not whole
    open(f"{out}/empty.h5", "wb").close()
    with open(f"{out}/random.h5", "wb") as f:
        f.write(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with open(f"{out}/text.h5", "w") as f:
        f.write("layer,head,token\n0,0,0\n")
    data = open(f"{out}/good.h5", "rb").read()
    for cut in (4, 100, 1000, len(data) // 2, len(data) - 1):
        with open(f"{out}/trunc_{cut}.h5", "wb") as f:
            f.write(data[:cut])
        print(f"trunc_{cut}")
    # signature intact, superblock body overwritten (the superblock sits at offset 0 in files h5py writes)
    with open(f"{out}/corrupt_superblock.h5", "wb") as f:
        f.write(data[:16] + b"\xff" * 32 + data[48:])
    os.makedirs(f"{out}/a_directory.h5", exist_ok=True)
    print(len(data))


if __name__ == "__main__":
    main()
