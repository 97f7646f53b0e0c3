/* tmpout.c: exclusive temporary outputs (tmpout.h). A predictable "<out>.tmp.<pid>" opened with O_TRUNC followed a
 * link planted in a shared folder and overwrote its target; these names are random, created O_EXCL|O_NOFOLLOW, and
 * kept in a small table that exit and signal handlers empty. */
#include "tmpout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A process writes at most a few outputs at once (one HDF5 file plus one text table): 8 slots is ample. Slots are
 * plain arrays so a signal handler can read them without locks; a slot is published by setting its first byte last. */
#define TMP_SLOTS 8
static char pending[TMP_SLOTS][TQ_PATH_MAX];

static void slot_add(const char *tmp)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (!pending[i][0]) {
            size_t n = strlen(tmp);
            memcpy(pending[i] + 1, tmp + 1, n);
            __atomic_store_n(&pending[i][0], tmp[0], __ATOMIC_RELEASE);
            return;
        }
}

static void slot_drop(const char *tmp)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (pending[i][0] && !strcmp(pending[i], tmp)) __atomic_store_n(&pending[i][0], 0, __ATOMIC_RELEASE);
}

void tq_tmp_remove_all(void)
{
    for (int i = 0; i < TMP_SLOTS; i++)
        if (__atomic_load_n(&pending[i][0], __ATOMIC_ACQUIRE)) {
            unlink(pending[i]);
            pending[i][0] = 0;
        }
}

int tq_tmp_create(const char *path, char *tmp)
{
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (n + TQ_TMP_SUFFIX_LEN >= TQ_PATH_MAX)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%.64s...': the path is %zu bytes, longer than the %d tq can "
                            "write (its temporary name adds %d)", path, n, TQ_PATH_MAX - 1 - TQ_TMP_SUFFIX_LEN,
                            TQ_TMP_SUFFIX_LEN);
    if (strlen(base) + TQ_TMP_SUFFIX_LEN > 255)
        return tq_error_set(TQ_ERR_USAGE, "cannot write '%s': the file name is %zu bytes, longer than the %d tq can "
                            "write (its temporary name adds %d)", path, strlen(base), 255 - TQ_TMP_SUFFIX_LEN,
                            TQ_TMP_SUFFIX_LEN);
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Not data randomness (lib/rng.h is for that): only a name nobody can predict, mixed from time, pid and address
     * (O_EXCL makes a guessed name fail, never follow; the mixing makes guessing pointless). */
    uint64_t s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32) ^
                 (uint64_t)(uintptr_t)tmp;
    for (int attempt = 0; attempt < 100; attempt++) {
        memcpy(tmp, path, n);
        memcpy(tmp + n, ".tmp.", 5);
        for (int i = 0; i < 6; i++) {
            s ^= s >> 33;
            s *= 0xff51afd7ed558ccdull;
            s ^= s >> 29;
            tmp[n + 5 + i] = alnum[s % (sizeof alnum - 1)];
        }
        tmp[n + TQ_TMP_SUFFIX_LEN] = 0;
        /* recorded before it exists: a signal handled by another thread (OpenMP workers take signals too) between
         * the open and the record would leave it behind. On failure the name is not ours: forgotten at once (a
         * signal in that instant unlinks a name someone else planted, never what a link points to). */
        slot_add(tmp);
        int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        int e = errno;
        if (fd >= 0) return fd;
        slot_drop(tmp);
        if (e != EEXIST) {
            tmp[0] = 0;
            return tq_error_set(TQ_ERR, "cannot write '%s': %s (check that the folder exists and is writable)", path,
                                strerror(e));
        }
        s += (uint64_t)attempt + 1;
    }
    tmp[0] = 0;
    return tq_error_set(TQ_ERR, "cannot write '%s': 100 temporary names beside it already exist", path);
}

int tq_tmp_verify(int fd, const char *tmp, const char *path)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0 || lstat(tmp, &b) != 0 || !S_ISREG(b.st_mode) || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino)
        return tq_error_set(TQ_ERR, "cannot write '%s': its temporary file '%s' was replaced while being opened", path,
                            tmp);
    return TQ_OK;
}

int tq_tmp_commit(char *tmp, const char *path)
{
    if (rename(tmp, path) != 0)
        return tq_error_set(TQ_ERR, "cannot write '%s': rename from '%s' failed: %s", path, tmp, strerror(errno));
    slot_drop(tmp);
    tmp[0] = 0;
    return TQ_OK;
}

void tq_tmp_discard(char *tmp)
{
    if (!tmp[0]) return;
    unlink(tmp);
    slot_drop(tmp);
    tmp[0] = 0;
}
