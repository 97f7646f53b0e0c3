#!/usr/bin/env python3
"""test_bench_round2.py: eval/bench_round2.py on a directory of synthetic CSVs shaped like one `gpu_run.sh round2`
call's: the speed-up is SDPA ms / tq ms of the same timing; the floor table takes the fastest scan of each shape
(of several block counts) and divides SDPA's graph time by it; the fast / fast-r2 table pairs each fused row with
its fast-r2 twin and reports the microseconds saved; the encoder table adds the mt2 rows of the dense encoder only and
converts ms to TB/s of fp16 input; the CSV holds the same numbers."""
import csv
import os
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOOL = os.path.join(ROOT, "eval", "bench_round2.py")
npass = nfail = 0

TQ_HEAD = "# device: NVIDIA H100 80GB HBM3\nkind,config,batch,tokens,ms,gbs,pct_copy,vs_fp16,vs_deq,check\n"


def check(cond, msg):
    global npass, nfail
    if cond:
        npass += 1
    else:
        nfail += 1
        print("FAIL " + msg, file=sys.stderr)


def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def main():
    with tempfile.TemporaryDirectory(dir=os.environ.get("TQ_TMP")) as d:
        write(d, "tq-main-b1-graph.csv", TQ_HEAD + "copy,cudaMemcpy D2D 1 GiB,0,0,0.708,3033,100,0,0,0\n"
              "attn,fused-turbo-mse 3b had,1,32768,0.0200,1311,43.2,0,0,0\n"
              "attn,fused-turbo-mse 3b had,1,131072,0.0500,2097,69.1,0,0,0\n"
              "attn,fused-turbo-prod 3b had,1,131072,0.0700,1500,49.5,0,0,0\n")
        write(d, "tq-main-b1_r2-graph.csv", TQ_HEAD + "attn,fused-turbo-mse 3b had,1,32768,0.0280,0,0,0,0,0\n"
              "attn,fused-turbo-prod 3b had,1,131072,0.0750,0,0,0,0,0\n")
        write(d, "sdpa-main-b1-graph.csv", "# device: x\nkind,config,batch,tokens,ms,gbs,pct_copy\n"
              "attn,sdpa,1,32768,0.0505,0,0\nattn,sdpa,1,131072,0.1757,0,0\n")
        write(d, "floor.csv", "row,bytes,blocks,us\ncopy,2147483648,0,708.0\nempty,0,1,2.10\ntwo-empty,0,1,4.00\n"
              "two-empty-pdl,0,1,3.50\nscan main-b1-32768,26214400,264,12.50\n"
              "scan main-b1-32768,26214400,528,11.50\nscan main-b1-32768,26214400,1056,11.90\n"
              "scan main-b1-131072,104857600,528,37.00\n")
        write(d, "tq-encode-eager.csv", TQ_HEAD + "encode,turbo-prod hadamard 3b,0,4194304,2.0,0,0,0,0,0\n"
              "encode,turbo-mse dense 3b,0,4194304,1.60,0,0,0,0,0\n")
        write(d, "tq-encode_mt2-eager.csv", TQ_HEAD + "encode,turbo-prod hadamard 3b,0,4194304,2.0,0,0,0,0,0\n"
              "encode,turbo-mse dense 3b,0,4194304,1.00,0,0,0,0,0\n")
        out = os.path.join(d, "report")
        p = subprocess.run([sys.executable, TOOL, d, out], capture_output=True, text=True)
        check(p.returncode == 0, f"rc {p.returncode}: {p.stderr}")
        md = open(out + ".md").read() if os.path.exists(out + ".md") else ""
        # 0.0505 / 0.0200 = 2.525 -> 2.52 or 2.53 by float rounding; 0.1757 / 0.05 = 3.514
        check("| turbo-mse | 1 | 32768 | graph | 0.0200 | 0.0505 | **2.5" in md, "speed-up row at 32k")
        check("| turbo-mse | 1 | 131072 | graph | 0.0500 | 0.1757 | **3.51x** |" in md, "speed-up row at 128k")
        # floor: the fastest scan (11.50 us); 50.5 / 11.5 = 4.39x, 20.0 / 11.5 = 1.74; 175.7 / 37 = 4.75x
        check("| 32q/8kv d128 | 1 | 32768 | 11.50 | 20.00 | 50.50 | 4.39x | 1.74 | >= 4.0x |" in md, "floor at 32k")
        check("| 32q/8kv d128 | 1 | 131072 | 37.00 | 50.00 | 175.70 | 4.75x | 1.35 | >= 5.0x |" in md, "floor 128k")
        check("An empty kernel costs 2.10 us a call; two in sequence 4.00 us (3.50 us" in md, "graph-node costs")
        # fast vs fast-r2: 28 - 20 = 8.0 us; turbo-prod 75 - 70 = 5.0 us
        check("| main-b1 | turbo-mse 3b had | 1 | 32768 | graph | 0.0200 | 0.0280 | 8.0 |" in md, "kprep mse row")
        check("| main-b1 | turbo-prod 3b had | 1 | 131072 | graph | 0.0700 | 0.0750 | 5.0 |" in md, "kprep prod row")
        # encoders: 4194304 x 128 x 2 bytes / 1.00 ms = 1.074 TB/s; the mt2 turbo-prod row is not repeated
        check("| turbo-mse dense 3b (mt2) | 4194304 | 1.0000 | 1.074 |" in md, "mt2 encoder row")
        check("| turbo-mse dense 3b | 4194304 | 1.6000 | 0.671 |" in md, "dense encoder row")
        check("hadamard 3b (mt2)" not in md, "mt2 rows only for the dense encoder")
        rows = list(csv.reader(open(out + ".csv"))) if os.path.exists(out + ".csv") else []
        fl = [r for r in rows if r and r[0] == "floor"]
        check(len(fl) == 2 and abs(float(fl[0][6]) - 0.0115) < 1e-12 and abs(float(fl[0][8]) - 50.5 / 11.5) < 1e-9,
              f"floor rows in the CSV: {fl}")
        kp = [r for r in rows if r and r[0] == "r2"]
        check(len(kp) == 2 and float(kp[0][6]) == 0.02 and float(kp[0][7]) == 0.028, f"kprep rows in the CSV: {kp}")
    print(f"{npass} passed, {nfail} failed")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
