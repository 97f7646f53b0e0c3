#!/usr/bin/env python3
"""bench_sdpa.py: PyTorch's scaled_dot_product_attention on an fp16 KV cache, one query token per (batch, query
head) — the fp16 decode baseline for tq bench --device cuda (same shapes, same GPU, same run of eval/gpu_run.sh).
With --window W (a sliding-window layer: attend only the last W of the L cached tokens) both forms are timed, the
window sliced out of the cache and the whole cache under a boolean mask, and the faster is the row (config
sdpa-gqa-w<W>); gbs counts the window's K and V bytes.
With --graph the timed calls are captured --iters times into a CUDA graph and replayed (device time without
Python's and the dispatcher's launch cost), as tq bench --graph does for its kernels.
Writes CSV rows: kind,config,batch,tokens,ms,gbs (bytes of K and V read per second)."""
import argparse
import sys

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--tokens", default="4096,32768,65536,131072")
    ap.add_argument("--q-heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--window", type=int, default=0, help="attend only the last W tokens (0: all)")
    ap.add_argument("--graph", action="store_true", help="time CUDA-graph replays of the calls")
    ap.add_argument("-o", dest="out", required=True)
    a = ap.parse_args()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1)
    rows = ["kind,config,batch,tokens,ms,gbs"]
    print(f"# sdpa on {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    for B in map(int, a.batch.split(",")):
        for L in map(int, a.tokens.split(",")):
            q = torch.randn(B, a.q_heads, 1, a.dim, device=dev, dtype=torch.float16, generator=g)
            k = torch.randn(B, a.kv_heads, L, a.dim, device=dev, dtype=torch.float16, generator=g)
            v = torch.randn(B, a.kv_heads, L, a.dim, device=dev, dtype=torch.float16, generator=g)
            W = a.window if 0 < a.window < L else L
            if W == L:
                forms = (("sdpa-gqa", lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)),)
            else:
                ks, vs = k[:, :, L - W:], v[:, :, L - W:]  # views: the slice is what a model would pass
                mask = torch.zeros(1, 1, 1, L, dtype=torch.bool, device=dev)
                mask[..., L - W:] = True
                forms = (("sliced", lambda: F.scaled_dot_product_attention(q, ks, vs, enable_gqa=True)),
                         ("masked", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)))
            best = None
            for name, fn in forms:
                try:
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    if a.graph:
                        side = torch.cuda.Stream()
                        side.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(side):  # warm-up on the capture stream, as torch's docs ask
                            for _ in range(3):
                                fn()
                        torch.cuda.current_stream().wait_stream(side)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            for _ in range(a.iters):
                                fn()
                        graph.replay()
                        torch.cuda.synchronize()
                        s.record()
                        graph.replay()
                        e.record()
                        e.synchronize()
                        del graph
                    else:
                        s.record()
                        for _ in range(a.iters):
                            fn()
                        e.record()
                        e.synchronize()
                    ms = s.elapsed_time(e) / a.iters
                except Exception as ex:  # a backend refusing the shape is a result, not a crash
                    print(f"{name} B={B} L={L}: {ex}", file=sys.stderr)
                    continue
                gbs = 2 * k.numel() * 2 * W / L / (ms * 1e6)
                print(f"| {name} | B={B} | L={L} | W={W} | {ms:.4f} ms | {gbs:.1f} GB/s |", flush=True)
                if best is None or ms < best[0]:
                    best = (ms, gbs)
            if best:
                cfg = "sdpa-gqa" if W == L else f"sdpa-gqa-w{W}"
                rows.append(f"attn,{cfg},{B},{L},{best[0]:.5f},{best[1]:.2f}")
            del q, k, v, forms
            torch.cuda.empty_cache()
    with open(a.out + ".tmp", "w") as f:
        f.write("\n".join(rows) + "\n")
    import os
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
