/* tq.h: the public face of libtq — version, status codes and the error channel every lib/ module reports through.
 * Library functions return TQ_OK (0) or a negative status and record one human-readable message with tq_error_set;
 * cmd/ prints it. lib/ never prints and never exits. */
#ifndef TQ_H
#define TQ_H

#include <stddef.h>
#include <stdint.h>

#define TQ_VERSION "0.1.0"

#ifndef TQ_HAVE_CUDA
#define TQ_HAVE_CUDA 0
#endif
#ifndef TQ_HAVE_OPENMP
#define TQ_HAVE_OPENMP 0
#endif

enum {
    TQ_OK = 0,
    TQ_ERR = -1,        /* runtime failure: bad file, bad data, I/O */
    TQ_ERR_USAGE = -2,  /* invalid parameters (bits out of range, unknown method, ...) */
    TQ_ERR_NOMEM = -3,
    TQ_ERR_NOCUDA = -4, /* the entry point needs CUDA and this build has none */
};

/* Record the message for the current thread (printf-style, lower-case, no trailing newline or "tq:" prefix).
 * Returns `status` so callers can write `return tq_error_set(TQ_ERR, "...")`. */
int tq_error_set(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message: "cannot read 'f.h5': " + old message. */
int tq_error_prefix(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *tq_error_msg(void);
void tq_error_clear(void);

/* Internal invariant: abort with file:line. Never for bad input. */
#define TQ_ASSERT(c) do { if (!(c)) tq_assert_fail(#c, __FILE__, __LINE__); } while (0)
void tq_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* Allocation that records TQ_ERR_NOMEM on failure (returns NULL); free with free(). */
void *tq_malloc(size_t n);
void *tq_calloc(size_t count, size_t size);

#endif
