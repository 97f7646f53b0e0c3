#!/usr/bin/env bash
# gpu_pack.sh: build the CUDA binaries here (make CUDA=1, nvcc, sm_90) and relink tq, test_cuda and test_cuda_model
# into .devbin/ (and .devbin/bin.tar.xz, what a device run carries) with
# HDF5, OpenBLAS/LAPACKE, libgfortran, libgomp, libstdc++ and the CUDA runtime linked statically, so they run on a
# bare GPU machine that has only glibc and the NVIDIA driver. eval/gpu_run.sh uses .devbin/ when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
# MPI=0: the GPU machine has no OpenMPI (the one-process stub is linked; cmd/mpi.o, if an MPI build left it, is not)
make -j2 CUDA=1 MPI=0 build/cuda/tq build/cuda/tests/test_cuda build/cuda/tests/test_cuda_model >/dev/null
mkdir -p .devbin
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
STATIC=(-Wl,-Bstatic -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -lsz -laec -lz
        -L/usr/lib/x86_64-linux-gnu/openblas-pthread -llapacke -lopenblas -lgfortran -lquadmath -lgomp -lstdc++
        -L"$CUDA_HOME/lib64" -lcudart_static -Wl,-Bdynamic -ldl -lrt -lpthread -lm -static-libgcc)
cc $(ls build/cuda/cmd/*.o | grep -v '/mpi\.o$') build/cuda/libtq.a -fopenmp "${STATIC[@]}" -o .devbin/tq
for t in test_cuda test_cuda_model; do
    cc -std=c11 -D_DEFAULT_SOURCE -O2 -Ilib -Itests -DTQ_HAVE_CUDA=1 -DTQ_HAVE_OPENMP=1 tests/$t.c \
       build/cuda/libtq.a -fopenmp "${STATIC[@]}" -o .devbin/$t
done
# the kernel experiments of eval/cuda_dev (one file each, cudart linked statically by nvcc's default)
for f in eval/cuda_dev/*.cu; do nvcc -O3 -std=c++17 -arch=sm_90 -o ".devbin/$(basename "$f" .cu)" "$f"; done
strip .devbin/tq .devbin/test_cuda .devbin/test_cuda_model # the carried tree is limited to 64 MiB
for b in .devbin/tq .devbin/test_cuda .devbin/test_cuda_model; do
    echo "$b: $(ldd "$b" | awk '{print $1}' | tr '\n' ' ')"
done
# what travels: one compressed file (about 8 MB; OpenBLAS's kernels for every CPU make the binaries 30+ MB each)
dev=$(cd .devbin && ls | grep -vE '^(tq|test_cuda|test_cuda_model|bin\.tar\.xz.*)$') # the experiments
tar -C .devbin -cf - tq test_cuda test_cuda_model $dev | xz -T2 -6 > .devbin/bin.tar.xz.tmp &&
    mv .devbin/bin.tar.xz.tmp .devbin/bin.tar.xz
ls -la .devbin/bin.tar.xz
