#!/usr/bin/env python3
"""numeq.py A B: exit 0 when two text outputs are equal except for numbers that agree to 1e-6 relative.

test_golden.sh compares byte for byte first. The goldens were recorded on one CPU; another CPU runs other SIMD
clones of the metric loops and other OpenBLAS kernels, whose float sums round differently in the last printed digit
(%.9g). Those are not refactor changes, so a mismatch is accepted when every non-numeric token is identical and every
number is within 1e-6 relative (a real change of method, seed or formula moves numbers by far more). Prints the
first difference otherwise."""
import re
import sys

NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf")


def split(text):
    parts, last = [], 0
    for m in NUM.finditer(text):
        parts.append(("t", text[last:m.start()]))
        parts.append(("n", m.group()))
        last = m.end()
    parts.append(("t", text[last:]))
    return parts


def close(a, b):
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= 1e-6 * max(abs(x), abs(y)) + 1e-12


def main():
    a = split(open(sys.argv[1], encoding="utf-8", errors="replace").read())
    b = split(open(sys.argv[2], encoding="utf-8", errors="replace").read())
    if len(a) != len(b):
        print("different shape (token counts differ)")
        return 1
    for (ka, va), (kb, vb) in zip(a, b):
        if ka != kb or (ka == "t" and va != vb) or (ka == "n" and not close(va, vb)):
            print(f"first difference: {va!r} vs {vb!r}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
