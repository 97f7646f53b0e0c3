/* sensfile.h: reading the sensitivity JSON that `tq sensitivity` writes (-o), offline or closed-loop: the curves
 * `tq mixed-schedule` allocates from and the closed-loop scan `tq sensitivity --weights` takes its weights from.
 * Everything wrong with a file dies with exit 1, located as 'file':line:col. */
#ifndef TQ_CMD_SENSFILE_H
#define TQ_CMD_SENSFILE_H

typedef struct {
    int n_layers, n_kv_heads, per_head, nb, nu, head_dim;
    char model[256];                 /* the scanned dump's model ("" in files without one) */
    int bits[8];
    char method[32], metric[32], params[192];
    int closed_loop;                 /* "closed_loop": true (tq sensitivity MODEL.gguf --closed-loop) */
    int tensors[2];                  /* whether any row is keys [0] / values [1] */
    int *tensor, *layer, *head;      /* [nu]; head 0 in files of layer units */
    double *coords;                  /* [nu] */
    double *metric_v, *bcode, *btot; /* [nu * nb]; metric_v NaN where the file has null */
    unsigned char *seen;             /* while loading: here, not in a local, so a die() midway leaks nothing */
} sens_file;

/* Parse and check `path`: version, method, units, shape, ascending bit widths, one row per (tensor, layer[, head])
 * covering every layer (x head) of each tensor present. A null metric reads as NaN. */
void sens_file_load(const char *path, sens_file *s);
void sens_file_free(sens_file *s);

#endif
