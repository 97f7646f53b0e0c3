/* error.c: the per-thread error message behind tq_error_set/tq_error_msg, and the invariant abort. */
#include "tq.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char tq_msg[1024];

int tq_error_set(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tq_msg, sizeof tq_msg, fmt, ap);
    va_end(ap);
    return status;
}

int tq_error_prefix(int status, const char *fmt, ...)
{
    char old[sizeof tq_msg];
    memcpy(old, tq_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tq_msg, sizeof tq_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tq_msg)
        snprintf(tq_msg + n, sizeof tq_msg - (size_t)n, "%s", old);
    return status;
}

const char *tq_error_msg(void) { return tq_msg[0] ? tq_msg : "unknown error"; }

void tq_error_clear(void) { tq_msg[0] = 0; }

void tq_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "tq: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}

void *tq_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) tq_error_set(TQ_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *tq_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) tq_error_set(TQ_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
