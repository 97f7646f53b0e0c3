#!/usr/bin/env python3
"""test_tokenizer_llama.py: the golden token ids of tests/golden/tokens/tokens_*.txt are llama.cpp's.

With --write (needs llama-cpp-python, not in CI): tokenizes the bundled texts and tests/golden/tokens/tokenizer_hard.txt
with llama.cpp (Llama(path, vocab_only=True).tokenize(text, add_bos=True, special=...)) for every variant
tests/test_tokenizer.c checks, and writes the golden files. Without arguments (the test suite): when llama_cpp
imports, checks that llama.cpp still gives the ids in the golden files; otherwise skips (CI: the C test compares
tq against the files).

Variants: the two bundled models as they are (SmolLM2: GPT-2 BPE, pre 'smollm', no BOS; Gemma 3: SentencePiece,
BOS 2, no space prefix), and their vocabularies under rewritten metadata — so llama.cpp exercises tokenizer paths
the bundled models do not use: SmolLM2's vocabulary with the 'gpt2', 'llama3' and 'qwen2' pre-tokenizers, Gemma 3's
with add_space_prefix (Llama 2 / TinyLlama's convention). The rewritten GGUFs hold only metadata (vocab_only)."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "golden", "tokens")
TEXTS = {"pride": "datasets/text/pride-and-prejudice.txt", "scandal": "datasets/text/scandal-in-bohemia.txt",
         "tale": "datasets/text/tale-of-two-cities.txt", "hard": "tests/golden/tokens/tokenizer_hard.txt"}
# name -> (model, {metadata key: new value})
VARIANTS = {
    "smollm2": ("smollm2", {}), "gemma3": ("gemma3", {}),
    "smollm2-gpt2": ("smollm2", {"tokenizer.ggml.pre": "gpt-2"}),
    "smollm2-llama3": ("smollm2", {"tokenizer.ggml.pre": "llama3"}),
    "smollm2-qwen2": ("smollm2", {"tokenizer.ggml.pre": "qwen2"}),
    "gemma3-prefix": ("gemma3", {"tokenizer.ggml.add_space_prefix": True}),
}


def model_path(which):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "get_models.sh"), which], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def rewrite(src, dst, changes):
    """Copy src's metadata (no tensors) to dst with `changes` applied."""
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v = changes.get(k, f.contents())
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(k, v)
        elif t == gguf.GGUFValueType.STRING:
            w.add_string(k, v)
        else:
            w.add_key_value(k, v, t)
    for k, v in changes.items():
        if k not in r.fields:
            w.add_key_value(k, v, gguf.GGUFValueType.BOOL if isinstance(v, bool) else gguf.GGUFValueType.STRING)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


_loaded = {}


def llama_ids(path, text, special):
    import llama_cpp
    if path not in _loaded:  # one vocab_only load per file: Gemma's takes seconds
        _loaded[path] = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    return _loaded[path].tokenize(text.encode("utf-8"), add_bos=True, special=special)


def cases():
    """(variant, text name, special) for every golden file."""
    for v in VARIANTS:
        for t in TEXTS:
            yield v, t, False
        yield v, "hard", True


def golden_name(v, t, special):
    return os.path.join(GOLDEN, f"tokens_{v}_{t}{'_special' if special else ''}.txt")


def read_golden(p):
    ids = []
    with open(p) as f:
        for line in f:
            if not line.startswith("#"):
                ids.extend(int(x) for x in line.split())
    return ids


def bench():
    """llama.cpp's tokenize on the same ~1 MiB as eval/bench_tokenizer.c (the bundled texts repeated), best of 3."""
    import time
    import llama_cpp
    small = [open(os.path.join(ROOT, TEXTS[t]), "rb").read() for t in ("pride", "scandal", "tale")]
    big, k = b"", 0
    while len(big) < 1 << 20:
        big += small[k % 3]
        k += 1
    big = big[:1 << 20]
    for m in ("smollm2", "gemma3"):
        p = model_path(m)
        if not p:
            continue
        lm = llama_cpp.Llama(model_path=p, vocab_only=True, verbose=False)
        best, n = 1e30, 0
        for _ in range(3):
            t0 = time.perf_counter()
            n = len(lm.tokenize(big, add_bos=False, special=False))
            best = min(best, time.perf_counter() - t0)
        print(f"llama.cpp {m}: 1 MiB -> {n} tokens in {best:.3f} s = {n / best:.0f} tokens/s")


def main():
    if "--bench" in sys.argv:
        bench()
        return 0
    write = "--write" in sys.argv
    try:
        import llama_cpp
    except ImportError:
        if write:
            sys.exit("test_tokenizer_llama: --write needs llama-cpp-python")
        print("SKIP llama_cpp not installed: the golden files are checked against tq by tests/test_tokenizer",
              file=sys.stderr)
        print("0 passed, 0 failed, 1 skipped")
        return 0
    paths = {m: model_path(m) for m in ("smollm2", "gemma3")}
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for v, (m, changes) in VARIANTS.items():
            if not paths[m]:
                continue
            if changes:
                files[v] = os.path.join(tmp, v + ".gguf")
                rewrite(paths[m], files[v], changes)
            else:
                files[v] = paths[m]
        for v, t, special in cases():
            if v not in files:
                skipped += 1
                continue
            text = open(os.path.join(ROOT, TEXTS[t]), encoding="utf-8", newline="").read()
            ids = llama_ids(files[v], text, special)
            g = golden_name(v, t, special)
            if write:
                tmpname = g + ".tmp"
                with open(tmpname, "w") as f:
                    f.write(f"# llama.cpp (llama-cpp-python {llama_cpp.__version__}) token ids of {TEXTS[t]}, "
                            f"variant {v}, add_bos=True, special={special}; {len(ids)} ids\n")
                    for i in range(0, len(ids), 20):
                        f.write(" ".join(map(str, ids[i:i + 20])) + "\n")
                os.replace(tmpname, g)
                passed += 1
            elif os.path.exists(g) and read_golden(g) == ids:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {os.path.basename(g)}: llama.cpp gives {len(ids)} ids that differ from the file",
                      file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
