"""tq from Python: KV-cache quantization (TurboQuant, PolarQuant, QJL, KIVI, int8) through libtq with ctypes.

Quantize and reconstruct NumPy arrays (or torch tensors) with every method and option the library's quantizer takes,
measure what quantization does (tq's metrics), read tq-kv dumps and tq-codes files, and run the evaluation engine
(sweeps, sensitivity scans) into pandas DataFrames with the same numbers the `tq` command prints.

    import numpy as np, tq
    x = np.random.default_rng(0).standard_normal((256, 64), dtype=np.float32)
    c = tq.quantize(x, "turbo-mse", 3)          # tq.Codes: packed sections (bytes) + parameters
    xhat = tq.dequantize(c)                     # float32 [256, 64]
    df = tq.sweep(["datasets/smollm2-135m.h5"], methods="turbo-mse,kivi", bits="2,3")

README "Python" documents the package; examples/tutorial.py walks through it.
"""
from ._lib import Error
from .core import (Codes, available_devices, dequantize, describe, metric_names, methods, metrics, params, quantize,
                   roundtrip)
from .files import CodesFile, Dump, read_codes, read_dump
from .evaluate import SCHEMA, SCHEMA_WIDE, perplexity, sensitivity, sweep

__version__ = "0.1.0"
__all__ = ["Codes", "CodesFile", "Dump", "Error", "SCHEMA", "SCHEMA_WIDE", "available_devices", "dequantize",
           "describe", "methods", "metric_names", "metrics", "params", "perplexity", "quantize", "read_codes", "read_dump",
           "roundtrip", "sensitivity", "sweep"]
