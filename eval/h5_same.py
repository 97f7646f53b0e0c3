#!/usr/bin/env python3
"""h5_same.py A.h5 B.h5 [label]: exit 0 when every dataset of A exists in B with the same dtype, shape and bytes (and
B has no others) — how eval/gpu_run.sh checks that quantize --device cuda writes what the CPU writes."""
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


a, b = (datasets(h5py.File(p, "r")) for p in sys.argv[1:3])
label = sys.argv[3] if len(sys.argv) > 3 else ""
bad = sorted(set(a) ^ set(b)) + [k for k in a if k in b and (a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
                                                             or not np.array_equal(a[k], b[k]))]
print(f"{label}: {len(a)} datasets, {len(bad)} differ" + (f" ({', '.join(bad[:5])})" if bad else ""))
sys.exit(1 if bad else 0)
