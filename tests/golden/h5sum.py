#!/usr/bin/env python3
"""h5sum.py FILE.h5: one line per attribute and dataset of an HDF5 file (name, dtype, shape, sha256 of the bytes /
the attribute's value), sorted, so two files compare on content: HDF5 object headers carry modification times, so
equal content need not mean equal file bytes."""
import hashlib
import sys

import h5py
import numpy as np


def attr_text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)} {hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]}"
    return repr(v)


lines = []


def visit(name, obj):
    for k, v in obj.attrs.items():
        lines.append(f"attr /{name}@{k} = {attr_text(v)}")
    if isinstance(obj, h5py.Dataset):
        a = obj[()]
        data = np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else repr(a).encode()
        lines.append(f"data /{name} {obj.dtype} {list(obj.shape)} {hashlib.sha256(data).hexdigest()}")


with h5py.File(sys.argv[1], "r") as f:
    for k, v in f.attrs.items():
        lines.append(f"attr /@{k} = {attr_text(v)}")
    f.visititems(visit)
print("\n".join(sorted(lines)))
