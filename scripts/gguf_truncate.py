#!/usr/bin/env python3
"""gguf_truncate.py: a GGUF with only the first N transformer blocks of a model (every other tensor and every metadata
key copied byte for byte, `<arch>.block_count` set to N). Real weights in their real quantized formats, small enough
to travel where the whole file cannot (the lent GPU machine: eval/gpu_run.sh loop compares the CPU and GPU forward
passes on it). Needs the `gguf` package. Usage: gguf_truncate.py IN.gguf N OUT.gguf"""
import os
import sys

import gguf


def main():
    src, n, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst + ".tmp", arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == f"{arch}.block_count":
            w.add_uint32(name, n)
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), vtype, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), vtype)
    for t in r.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= n:
            continue
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
