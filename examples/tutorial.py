#!/usr/bin/env python3
"""tutorial.py: the tq Python package in five steps on the bundled SmolLM2 dump. Run from the source tree after
`make` (PYTHONPATH=python python3 examples/tutorial.py) or anywhere after `pip install ./python`.

1. quantize / dequantize one kv head's keys; 2. measure what it did; 3. read a codes file tq quantize wrote;
4. a sweep into pandas and a groupby; 5. a sensitivity scan."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import numpy as np  # noqa: E402

import tq  # noqa: E402

DUMP = os.path.join(HERE, "..", "datasets", "smollm2-135m.h5")

# 1. one slice: layer 3, kv head 0 of the dump (keys [tokens, head_dim])
with tq.read_dump(DUMP) as d:
    print("model:", d.meta["model"], "layers:", d.n_layers, "kv heads:", d.meta["n_kv_heads"])
    ly = d.layer(3)
k, q, v = ly["keys"][0], ly["queries"][0:3], ly["values"][0]  # 9 query heads share 3 kv heads: 3 per group
codes = tq.quantize(k, "turbo-mse", 3, layer=3, head=0, tensor="keys")
print("sections:", {n: (a.dtype.name, a.size) for n, a in codes.sections.items()},
      "bits/coord: %.3f" % codes.bits_total)
khat = tq.dequantize(codes)

# 2. tq's metrics (README "Metrics") with the layer's attention spec
vhat, _ = tq.roundtrip(v, "turbo-mse", 3, layer=3, head=0, tensor="values")
m = tq.metrics(k, khat, q, v, vhat, layer=3, head=0, **{x: ly["attn"][x] for x in ("window", "scale", "softcap")})
print("keys nmse %.4f  attn_kl %.4g  top8 %.3f; values out_rel %.4f"
      % (m["keys"]["nmse"], m["keys"]["attn_kl"], m["keys"]["top8"], m["values"]["out_rel"]))

# 3. a codes file written by the CLI decodes to the same floats
tqbin = os.path.join(HERE, "..", "tq")
if os.path.exists(tqbin):
    with tempfile.TemporaryDirectory() as t:
        subprocess.run([tqbin, "quantize", DUMP, "--method", "turbo-mse", "--bits", "3", "--layers", "3", "-o",
                        f"{t}/c.h5"], check=True, capture_output=True)
        with tq.read_codes(f"{t}/c.h5") as cf:
            stored = cf.layer(0)["keys"][0]
        print("CLI codes == Python codes:", np.array_equal(tq.dequantize(stored), khat))

# 4. a sweep as a DataFrame: per-layer rows, keys, attention KL by method
df = tq.sweep(DUMP, methods="turbo-mse,kivi,polar", bits="2,3", layers="0-5", tokens=128, aggregate="layer")
keys = df[(df.scope == "layer") & (df.tensor == "keys")]
print(keys.pivot_table(index="layer", columns=["method", "bits_code"], values="attn_kl").round(4))

# 5. which layers are most sensitive to 2-bit keys
s = tq.sensitivity(DUMP, "turbo-mse", "2-3", tokens=128)
print(s[s.bits == 2].nlargest(3, "value")[["layer", "value"]])
