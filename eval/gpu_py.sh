#!/usr/bin/env bash
# gpu_py.sh: the Python package (python/tq, tq.hf) on a lent GPU machine, which has python3, torch and transformers
# but no compiler, no HDF5 or OpenBLAS and no network. `pack` (here, after make) links libtq.so with OpenBLAS, LAPACKE
# and libgfortran static, copies the shared libraries it still needs (HDF5 and what HDF5 links, libgomp; ldd, glibc's
# own left out) and writes the one file that travels, .devbin/py.tar.xz (~8 MB: the carried tree is limited to
# 64 MiB with the repository). `run` (there) unpacks it, points the package at it (TQ_LIB; libtq.so's RPATH finds
# the rest in .devbin/py/lib, so nothing else in the process sees those libraries first) and runs
# tests/py/test_python_hf.py (a tiny Llama on the CPU and, where CUDA is, on the GPU), writing $OUT/hf.log.
# usage: bash eval/gpu_py.sh pack | run
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
pack)
    make -s -j2 build/libtq.so >/dev/null  # the position-independent objects
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/py/lib"
    # libgomp stays shared: its TLS cannot go into a shared object (R_X86_64_TPOFF32); HDF5's static archive is not
    # position-independent
    cc -shared build/pic/lib/*.o -fopenmp -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 \
        -Wl,-Bstatic -L/usr/lib/x86_64-linux-gnu/openblas-pthread -llapacke -lopenblas -lgfortran -lquadmath \
        -Wl,-Bdynamic -lgomp -ldl -lrt -lpthread -lm -static-libgcc \
        -Wl,-rpath,'$ORIGIN/lib' -Wl,--disable-new-dtags -o "$tmp/py/libtq.so"
    strip "$tmp/py/libtq.so"
    ldd "$tmp/py/libtq.so" | awk '/=>/ {print $3}' |
        grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64)\.so' |
        while read -r f; do cp -L "$f" "$tmp/py/lib/"; done
    strip "$tmp"/py/lib/* 2>/dev/null || true
    mkdir -p .devbin
    rm -rf .devbin/py  # an unpacked copy from a local `run` would travel too (~70 MB): only the archive goes
    tar -C "$tmp" -cf - py | xz -T2 -6 > .devbin/py.tar.xz.tmp && mv .devbin/py.tar.xz.tmp .devbin/py.tar.xz
    echo "gpu_py: .devbin/py.tar.xz $(stat -c %s .devbin/py.tar.xz) bytes: libtq.so + $(ls "$tmp/py/lib" | tr '\n' ' ')"
    ;;
run)
    OUT=${OUT:-$PWD/gpu_out}
    mkdir -p "$OUT"
    [ -f .devbin/py.tar.xz ] || { echo "gpu_py: no .devbin/py.tar.xz: run 'bash eval/gpu_py.sh pack' first" >&2; exit 1; }
    rm -rf .devbin/py
    python3 -c "import tarfile; tarfile.open('.devbin/py.tar.xz').extractall('.devbin')"
    export TQ_LIB=$PWD/.devbin/py/libtq.so
    rc=0
    {
        nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
        python3 -c "import sys, torch, transformers, numpy; print('python', sys.version.split()[0], 'torch',
torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'numpy',
numpy.__version__)"
        python3 -c "import sys; sys.path.insert(0, 'python'); import tq; print('tq', tq.__version__, tq._lib.path,
'devices', tq.available_devices()); print('hdf5 from', sorted({l.split()[-1] for l in open('/proc/self/maps')
if 'libhdf5' in l}))"
        echo "== tests/py/test_python_hf.py"
        python3 tests/py/test_python_hf.py
    } > >(tee "$OUT/hf.log") 2>&1 || rc=$?
    sleep 1  # tee drains
    grep -qE '^[0-9]+ passed, 0 failed, 0 skipped$' "$OUT/hf.log" || rc=1
    echo "gpu_py run: rc $rc" | tee -a "$OUT/hf.log"
    exit $rc
    ;;
*)
    echo "usage: bash eval/gpu_py.sh pack|run" >&2
    exit 2
    ;;
esac
