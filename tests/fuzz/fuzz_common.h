/* fuzz_common.h: what the libFuzzer harnesses share — the input bytes as a file path without touching the disk
 * (a file in /dev/shm, so HDF5 opens it like any file) and the size caps that keep one input fast. */
#ifndef TQ_FUZZ_COMMON_H
#define TQ_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Layers and slices above this many values are legal for tq (up to 2^31) but would make one input take seconds
 * and gigabytes (HDF5 fills unwritten chunks with zeros); the harnesses read smaller ones only. */
#define FUZZ_MAX_VALUES (1 << 20)

/* The bytes as a path: one file per process in /dev/shm (memory, not disk), rewritten for every input. (A memfd
 * through /proc/self/fd would avoid the name, but HDF5 1.10 refuses to open those paths.) */
static char fuzz_path[64];
static void fuzz_cleanup(void) { unlink(fuzz_path); }

static const char *fuzz_as_file(const uint8_t *data, size_t size)
{
    if (!fuzz_path[0]) {
        snprintf(fuzz_path, sizeof fuzz_path, "%s/tq-fuzz.%ld", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
                 (long)getpid());
        atexit(fuzz_cleanup);
    }
    FILE *f = fopen(fuzz_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    return fuzz_path;
}

#endif
