# lanes.sh (sourced by tests/run.sh and tests/fuzz/run.sh): the cores as lanes that programs take and give back. A
# lane is one byte in a FIFO: lane_take reads one (waiting while none is left), lane_give writes it back. With
# TQ_LANES naming a FIFO that holds the tokens, every runner of a CI run draws from the same lanes (.ci/run: the plain
# and sanitizer suites and the fuzz harnesses at once); without it, lanes_open N makes a runner's own N lanes.
lanes_open() { # N
    if [ -n "${TQ_LANES:-}" ]; then
        [ -p "$TQ_LANES" ] || { echo "lanes: TQ_LANES='$TQ_LANES' is not a FIFO" >&2; exit 2; }
        exec {LANE_FD}<>"$TQ_LANES"
        return
    fi
    local d
    d=$(mktemp -d /tmp/tq-lanes.XXXXXX)
    mkfifo "$d/lanes"
    exec {LANE_FD}<>"$d/lanes"  # read-write: never blocks on open, never sees end of file
    rm -rf "$d"                 # the open descriptor keeps the FIFO; children inherit it
    local n
    for ((n = 0; n < $1; n++)); do printf x >&"$LANE_FD"; done
}
lane_take() { local c; IFS= read -r -n 1 -u "$LANE_FD" c; }
lane_give() { printf x >&"$LANE_FD"; }
