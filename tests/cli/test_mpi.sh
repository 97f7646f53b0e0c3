#!/usr/bin/env bash
# test_mpi.sh: `mpirun -n 2|3 tq sweep|entropy|sensitivity|perplexity` writes the bytes a single process writes (the
# units' results are gathered on rank 0 and aggregated by the same library code, so equality is exact, not a
# tolerance), and a failing or killed rank ends the job with one message naming the rank and the unit, a non-zero
# exit and no output file (README "Scaling out"). Skips cleanly without mpirun or with a tq built without MPI.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$ROOT/datasets/smollm2-135m.h5
G=$ROOT/datasets/gemma3-270m.h5

if ! command -v mpirun >/dev/null; then
    skip "no mpirun (scripts/deps.sh installs openmpi-bin)"; finish; exit
fi
if ! ldd "$TQ" 2>/dev/null | grep -q libmpi; then
    skip "tq is built without MPI (make MPI=1)"; finish; exit
fi
SAN=0
ldd "$TQ" | grep -q libasan && SAN=1
NS="2 3"
[ "$SAN" = 1 ] && NS=2  # under ASan every rank is several times slower: -n 2 covers the code, -n 3 the plain suite
# Open MPI's own allocations outlive MPI_Finalize (~120 kB per rank, from its runtime and libevent): LeakSanitizer
# would fail every rank for them. tests/mpi_lsan.supp names only Open MPI's libraries, so a leak in tq still fails;
# full unwinding (the libraries have no frame pointers) and components kept loaded let LSan see those frames.
export LSAN_OPTIONS="suppressions=$ROOT/tests/mpi_lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export OMPI_MCA_mca_base_component_disable_dlclose=1
MPI=(mpirun --oversubscribe --allow-run-as-root -x LSAN_OPTIONS -x TQ_MPI_FAULT -x OMPI_MCA_mca_base_component_disable_dlclose)
export TQ_MPI_FAULT=

# same NAME FILE... -- ARGS: tq ARGS in one process, then under mpirun -n 2 and -n 3 ($NS); stdout and every FILE (relative
# to a per-run folder) must be byte-identical to the single process's
same() {
    local name=$1; shift
    local files=()
    while [ "$1" != -- ]; do files+=("$1"); shift; done
    shift
    mkdir -p "$T/$name.1"
    if ! (cd "$T/$name.1" && "$TQ" "$@" >stdout 2>stderr); then
        bad "$name: the single process failed: $(cat "$T/$name.1/stderr")"; return
    fi
    for n in $NS; do
        mkdir -p "$T/$name.$n"
        if ! (cd "$T/$name.$n" && "${MPI[@]}" -n $n "$TQ" "$@" >stdout 2>stderr); then
            bad "$name -n $n: exit non-zero: $(head -c 600 "$T/$name.$n/stderr")"; continue
        fi
        local f diff=0
        for f in stdout "${files[@]}"; do
            cmp -s "$T/$name.1/$f" "$T/$name.$n/$f" || { bad "$name -n $n: '$f' differs from one process's"; diff=1; }
        done
        [ "$diff" = 0 ] && ok
    done
}

# sweep: two dumps of different shapes (Gemma 3 has one kv head, sliding-window layers), three methods (Markdown on
# stdout); JSON with a head selection and the rotation axis; synthetic inputs (layers generated whole on
# each rank)
same sweep-md -- sweep "$D" "$G" --layers 0-2 --methods turbo-prod,int8,kivi --bits 2,3 --tokens 96
same sweep-json s.json -- sweep "$D" --layers 1,4 --heads 0,2 --methods qjl,turbo-mse --bits 1-2 \
    --rotation dense,hadamard --tokens 96 -o s.json
same sweep-synthetic -- sweep --synthetic gaussian,rope --layers 2 --heads 3 --tokens 64 --dim 32 \
    --methods kivi,turbo-mse --bits 2
same entropy e.csv -- entropy "$D" --synthetic gaussian --tokens 96 --bits 2,3 -o e.csv
# sensitivity: per layer (heads aggregated on rank 0 in head order) and per head, both tensors
same sensitivity sens.json -- sensitivity "$D" --method turbo-mse --bits 2-3 --tokens 128 -o sens.json
same sensitivity-heads sens.json -- sensitivity "$D" --method kivi --bits 2-4 --tokens 96 --per-head --tensor both \
    --metric nmse -o sens.json
# --weights: every rank loads and checks them, rank 0 weighs the gathered curves (a closed-loop file of the dump's
# shape written here: 30 layers, keys, cl_kl at 3 bits)
python3 - "$T/cl.json" <<'PY'
import json, sys
rows = [{"tensor": "keys", "layer": l, "head": None, "window": 0, "coords": 128 * 64 * 3, "metric": [0.01 * (1 + l % 7)],
         "bits_code": [3], "bits_total": [3.25]} for l in range(30)]
json.dump({"tq_sensitivity": 1, "closed_loop": True, "method": "turbo-mse", "metric": "cl_kl", "units": "layer",
           "n_layers": 30, "n_kv_heads": 3, "head_dim": 64, "bits": [3], "rows": rows}, open(sys.argv[1], "w"))
PY
same sensitivity-weights sens.json -- sensitivity "$D" --method turbo-mse --bits 2-3 --tokens 128 \
    --weights "$T/cl.json" -o sens.json
# perplexity: one unit per run, the per-position curves gathered too (slow under the sanitizers: a model per rank).
# --threads 1: the model's sgemm sums depend on the BLAS thread count (one process's default is every core, a rank
# bound to one core by mpirun gets one), so the comparison fixes it, as any two perplexity runs must.
S=$(bash "$ROOT/scripts/get_models.sh" smollm2 2>/dev/null || true)
if [ "$SAN" = 1 ]; then skip "perplexity under mpirun: three model loads per case are minutes under ASan"
elif [ -z "$S" ] || [ ! -f "$S" ]; then skip "perplexity under mpirun: no SmolLM2 model"
else
    same perplexity p.csv pos.csv -- perplexity "$S" --text "$ROOT/datasets/text/tale-of-two-cities.txt" --tokens 40 \
        --threads 1 --methods turbo-mse --bits 2,3 --per-position pos.csv -o p.csv
fi

# faults: a unit that fails on rank 1 -> one "tq:" line naming rank 1 and the unit, exit 1, no output (nor its
# temporary file)
mkdir -p "$T/fail"
(cd "$T/fail" && TQ_MPI_FAULT=1:fail "${MPI[@]}" -n 2 "$TQ" sweep "$D" --layers 0-1 --methods kivi --bits 2 \
    --tokens 64 -o out.csv >stdout 2>stderr)
rc=$?
check "failed unit: exit 1 (got $rc)" test "$rc" = 1
check "failed unit: one message naming rank 1 and the unit" \
    test "$(grep -cE "^tq: rank 1 failed on unit [0-9]+ of 6 \('.*smollm2-135m.h5' layer [01] kv head [0-2], kivi,bits=2.*\): injected fault" "$T/fail/stderr")" = 1
check "failed unit: only one tq: line" test "$(grep -c '^tq:' "$T/fail/stderr")" = 1
check "failed unit: no output file" test -z "$(ls "$T/fail" | grep -v '^std')"

# a killed rank (SIGKILL, as the OOM killer does) -> the launcher stops the job; rank 0 names the units in flight
mkdir -p "$T/kill"
(cd "$T/kill" && TQ_MPI_FAULT=1:kill "${MPI[@]}" -n 2 "$TQ" sweep "$D" --layers 0-1 --methods kivi --bits 2 \
    --tokens 64 -o out.csv >stdout 2>stderr)
rc=$?
check "killed rank: exit non-zero (got $rc)" test "$rc" != 0
check "killed rank: rank 0 names rank 1's units" \
    grep -qE "^tq: the job was stopped .*units in flight: rank 1: '.*' layer [01] kv head [0-2]" "$T/kill/stderr"
check "killed rank: no output file" test -z "$(ls "$T/kill" | grep -v '^std')"

# a bad slice (a NaN in layer 1's keys): every process refuses it; under mpirun the rank that read it is named
python3 - "$D" "$T/nan.h5" <<'EOF'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    k = f["layer_001/keys"]; x = k[...]; x[2, 5, 7] = float("nan"); k[...] = x
EOF
mkdir -p "$T/nan"
(cd "$T/nan" && "${MPI[@]}" -n 2 "$TQ" sweep "$T/nan.h5" --layers 0-1 --methods kivi --bits 2 --tokens 64 \
    -o out.csv >stdout 2>stderr)
rc=$?
check "bad slice: exit 1 (got $rc)" test "$rc" = 1
check "bad slice: one message naming the rank, layer 1 head 2 and the NaN" \
    test "$(grep -cE "^tq: rank [01] failed on unit [0-9]+ of 6 \('.*nan.h5' layer 1 kv head 2, .*non-finite.*head 2, token 5, channel 7" "$T/nan/stderr")" = 1
check "bad slice: no output file" test -z "$(ls "$T/nan" | grep -v '^std')"
# --resume FILE: a complete run records every unit; a file cut after 10 records and half of the 11th (a job killed
# mid-write) resumes with 10 done and the rest computed; a complete file computes nothing; every output is the
# single process's bytes. A file of another job (other --bits) is refused (exit 2, no output); so is --resume in
# one process. Record size: 8 bytes of unit index + the unit's result, read from the file's own size.
mkdir -p "$T/res"
RA=(sweep "$D" --layers 0-3 --methods turbo-mse,kivi --bits 2,3 --tokens 64 --format csv)
(cd "$T/res" && "$TQ" "${RA[@]}" -o one.csv >/dev/null 2>&1) || bad "resume: the single process failed"
if (cd "$T/res" && "${MPI[@]}" -n 2 "$TQ" "${RA[@]}" --resume r.bin -o full.csv >/dev/null 2>err1); then
    check "resume: a fresh file starts with 0 of 48 done" grep -q "^tq: resuming from 'r.bin': 0 of 48 units done, 48 to run" "$T/res/err1"
    check "resume: first run == one process" cmp -s "$T/res/one.csv" "$T/res/full.csv"
    rec=$(( ($(stat -c %s "$T/res/r.bin") - 32) / 48 ))
    check "resume: 48 records of equal size" test $(( 32 + 48 * rec )) = "$(stat -c %s "$T/res/r.bin")"
    truncate -s $(( 32 + 10 * rec + rec / 2 )) "$T/res/r.bin"
    if (cd "$T/res" && "${MPI[@]}" -n 2 "$TQ" "${RA[@]}" --resume r.bin -o part.csv >/dev/null 2>err2); then
        check "resume: 10 records kept, the cut one dropped" grep -q "^tq: resuming from 'r.bin': 10 of 48 units done, 38 to run" "$T/res/err2"
        check "resume: resumed run == one process" cmp -s "$T/res/one.csv" "$T/res/part.csv"
        check "resume: the file is whole again" test $(( 32 + 48 * rec )) = "$(stat -c %s "$T/res/r.bin")"
    else bad "resume: the resumed run failed: $(head -c 600 "$T/res/err2")"; fi
    if (cd "$T/res" && "${MPI[@]}" -n 3 "$TQ" "${RA[@]}" --resume r.bin -o again.csv >/dev/null 2>err3); then
        check "resume: a complete file leaves nothing to run (-n 3)" grep -q "48 of 48 units done, 0 to run" "$T/res/err3"
        check "resume: complete file == one process" cmp -s "$T/res/one.csv" "$T/res/again.csv"
    else bad "resume: the run on a complete file failed: $(head -c 600 "$T/res/err3")"; fi
    (cd "$T/res" && "${MPI[@]}" -n 2 "$TQ" sweep "$D" --layers 0-3 --methods turbo-mse,kivi --bits 2 --tokens 64 \
        --format csv --resume r.bin -o other.csv >/dev/null 2>err4)
    rc=$?
    check "resume: another job's file refused (exit $rc, want 2)" test "$rc" = 2
    check "resume: another job's file named in one message" \
        test "$(grep -c "^tq: resume file 'r.bin' belongs to another job" "$T/res/err4")" = 1
    check "resume: no output after the refusal" test ! -e "$T/res/other.csv"
else bad "resume: the first run failed: $(head -c 600 "$T/res/err1")"; fi
expect_fail "resume: one process refuses it" 2 "option '--resume' resumes an MPI job" -- \
    "$TQ" "${RA[@]}" --resume "$T/res/r1.bin" -o "$T/res/x.csv"

# usage errors: every rank parses the same arguments; the message is printed once (rank 0), exit 2
"${MPI[@]}" -n 3 "$TQ" sweep "$D" --bits 9 --methods nosuch >/dev/null 2>"$T/usage.err"
rc=$?
check "usage error under -n 3: exit 2 (got $rc)" test "$rc" = 2
check "usage error under -n 3: one tq: line" test "$(grep -c '^tq: ' "$T/usage.err")" = 1
finish
