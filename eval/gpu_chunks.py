#!/usr/bin/env python3
"""gpu_chunks.py: carry a file larger than one device call may carry (64 MiB with the tree: the real models' GGUFs,
98 and 253 MB) to a lent GPU machine in parts, over consecutive calls while the machine stays warm (ignored files
that a call carried are kept there until it is given back).

  gpu_chunks.py split FILE [--mb 56] [--dir .devcarry/chunks]
      here: xz-compress FILE and cut the stream into parts of at most MB megabytes, DIR/<name>.xz.NN, with
      DIR/<name>.sha256 (the uncompressed file's); prints the parts, one per call's carry list
  gpu_chunks.py join NAME DEST [--dir .devcarry/chunks]
      on the device: once every part has arrived, decompress them in order into DEST (written to a temporary name,
      renamed when its sha256 matches) and print "complete"; otherwise list the parts still missing and exit 3

Bad input (a missing file, a corrupt stream, a checksum mismatch) gets one message on stderr and exit 1; nothing is
left at DEST."""
import argparse
import hashlib
import lzma
import os
import sys


def die(msg, code=1):
    print(f"gpu_chunks: {msg}", file=sys.stderr)
    sys.exit(code)


def split(a):
    name = os.path.basename(a.file)
    if not os.path.isfile(a.file):
        die(f"cannot read '{a.file}'")
    if a.mb < 1:
        die(f"--mb {a.mb}: must be at least 1")
    os.makedirs(a.dir, exist_ok=True)
    for f in os.listdir(a.dir):  # parts of an earlier split of the same file would mix with these
        if f.startswith(name + ".xz.") or f == name + ".sha256":
            os.remove(os.path.join(a.dir, f))
    h = hashlib.sha256()
    comp = lzma.LZMACompressor(preset=6)
    limit, part, out, parts = a.mb * 1000 * 1000, 0, None, []

    def emit(data):
        nonlocal part, out
        while data:
            if out is None or out.tell() >= limit:
                if out:
                    out.close()
                path = os.path.join(a.dir, f"{name}.xz.{part:02d}")
                parts.append(path)
                out = open(path, "wb")
                part += 1
            room = limit - out.tell()
            out.write(data[:room])
            data = data[room:]

    with open(a.file, "rb") as f:
        while True:
            buf = f.read(1 << 22)
            if not buf:
                break
            h.update(buf)
            emit(comp.compress(buf))
    emit(comp.flush())
    out.close()
    with open(os.path.join(a.dir, name + ".sha256"), "w") as f:
        f.write(f"{h.hexdigest()}  {name}  {len(parts)}\n")
    for p in parts:
        print(f"{p}  {os.path.getsize(p)} bytes")
    print(os.path.join(a.dir, name + ".sha256"))


def join(a):
    sums = os.path.join(a.dir, a.name + ".sha256")
    if not os.path.isfile(sums):
        die(f"'{sums}' has not arrived (carry it with the first part)")
    with open(sums) as f:
        fields = f.read().split()
    if len(fields) != 3:
        die(f"'{sums}': expected 'sha256  name  parts'")
    want, n = fields[0], int(fields[2])
    paths = [os.path.join(a.dir, f"{a.name}.xz.{i:02d}") for i in range(n)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        print("missing: " + " ".join(missing))
        sys.exit(3)
    tmp = a.dest + ".tmp"
    h = hashlib.sha256()
    dec = lzma.LZMADecompressor()
    try:
        with open(tmp, "wb") as out:
            for p in paths:
                with open(p, "rb") as f:
                    while True:
                        buf = f.read(1 << 22)
                        if not buf:
                            break
                        data = dec.decompress(buf)
                        h.update(data)
                        out.write(data)
        if not dec.eof:
            raise lzma.LZMAError("the stream ends early")
        if h.hexdigest() != want:
            raise ValueError(f"sha256 {h.hexdigest()[:12]}... is not the split file's {want[:12]}...")
    except (lzma.LZMAError, ValueError, OSError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        die(f"cannot join '{a.name}': {e}")
    os.replace(tmp, a.dest)
    print("complete")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("file")
    s.add_argument("--mb", type=int, default=56)
    s.add_argument("--dir", default=".devcarry/chunks")
    j = sub.add_parser("join")
    j.add_argument("name")
    j.add_argument("dest")
    j.add_argument("--dir", default=".devcarry/chunks")
    a = ap.parse_args()
    split(a) if a.cmd == "split" else join(a)


if __name__ == "__main__":
    main()
