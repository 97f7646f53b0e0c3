#!/usr/bin/env python3
"""gguf_seeds.py OUTDIR: the seed corpus of tests/fuzz/fuzz_gguf.c, written by the gguf package's GGUFWriter: every
metadata value type, a token list with scores and types, an array of arrays, and one small tensor of each type tq
dequantizes (random bytes: the reader does not care what the blocks hold). Deterministic (seed 7)."""
import numpy as np, gguf, sys
rng = np.random.default_rng(7)
def seed(path, types, arch="llama", extra=True):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(2)
    w.add_uint8("t.u8", 7); w.add_int8("t.i8", -3); w.add_uint16("t.u16", 500); w.add_int16("t.i16", -500)
    w.add_int32("t.i32", -70000); w.add_float32("t.f32", 0.5); w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 1 << 40); w.add_int64("t.i64", -(1 << 40)); w.add_float64("t.f64", 1e-300)
    w.add_string("t.str", "h\u00e9llo")
    if extra:
        w.add_token_list(["<s>", "</s>", "a", "b", "\u0120the"])
        w.add_token_scores([0.0, -1.0, -2.0, -3.0, -4.0])
        w.add_token_types([3, 3, 1, 1, 1])
        w.add_array("t.nested", [[1, 2, 3], ["x", "y"]])
    for name, qt, shape in types:
        block, size = gguf.GGML_QUANT_SIZES[qt]
        n = int(np.prod(shape))
        if qt == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
        elif qt == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
        else:
            raw = rng.integers(0, 256, (shape[0], shape[1] // block * size), dtype=np.uint8)
            # finite fp16 scales are not needed by the reader; random bytes are a fine seed
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
Q = gguf.GGMLQuantizationType
seed(sys.argv[1] + "/legacy.gguf", [("a", Q.F32, (2, 8)), ("b", Q.F16, (2, 8)), ("c", Q.Q8_0, (1, 32)),
     ("d", Q.Q4_0, (1, 32)), ("e", Q.Q4_1, (1, 32)), ("f", Q.Q5_0, (1, 32)), ("g", Q.Q5_1, (1, 32)),
     ("h", Q.BF16, (1, 4))])
seed(sys.argv[1] + "/kquants.gguf", [("q2", Q.Q2_K, (1, 256)), ("q3", Q.Q3_K, (1, 256)), ("q4", Q.Q4_K, (1, 256)),
     ("q5", Q.Q5_K, (1, 256)), ("q6", Q.Q6_K, (1, 256))], arch="gemma3", extra=False)
