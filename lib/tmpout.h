/* tmpout.h: the one way tq writes an output file — a fresh temporary name beside it, created exclusively (never
 * through a planted link or over someone else's file), renamed into place when complete and removed on failure,
 * on exit and on SIGINT/SIGTERM (cmd/ installs the handler that calls tq_tmp_remove_all). */
#ifndef TQ_TMPOUT_H
#define TQ_TMPOUT_H

#include "tq.h"

/* Longest path tq writes, temporary suffix included (Linux PATH_MAX). */
#define TQ_PATH_MAX 4096
/* The suffix appended to the output's name: ".tmp." and six random characters. */
#define TQ_TMP_SUFFIX_LEN 11

/* Create "<path>.tmp.XXXXXX" with O_CREAT|O_EXCL|O_NOFOLLOW (mode 0666 less the umask) in the output's folder, retrying
 * another name when one exists; `tmp` (TQ_PATH_MAX bytes) receives the name and the name is recorded for removal
 * until tq_tmp_commit or tq_tmp_discard. Returns an open descriptor (close it, or fdopen it), TQ_ERR_USAGE when
 * the temporary name would not fit (path or file name too long), TQ_ERR on any other failure; messages name `path`. */
int tq_tmp_create(const char *path, char *tmp);
/* After the HDF5 library has (re)opened `tmp` by name: TQ_OK when it is still the file `fd` created (not replaced by
 * a link in between), else TQ_ERR naming `path`. */
int tq_tmp_verify(int fd, const char *tmp, const char *path);
/* Rename tmp over path; tmp[0] becomes 0 on success. TQ_ERR with a message naming path otherwise (tmp left to the
 * caller's tq_tmp_discard). */
int tq_tmp_commit(char *tmp, const char *path);
/* Remove tmp (when tmp[0]) and forget it; tmp[0] becomes 0. */
void tq_tmp_discard(char *tmp);
/* Remove every pending temporary file: async-signal-safe (unlink only), for exit and signal handlers. */
void tq_tmp_remove_all(void);

#endif
