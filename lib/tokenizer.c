/* tokenizer.c: GPT-2 byte-level BPE and SentencePiece-style BPE from GGUF metadata (tokenizer.h). Both follow
 * llama.cpp's tokenizer — its pre-tokenizer regexes, merge order, special-token partition and byte fallback — so
 * the ids are the ones the model was run with there; tests/golden holds ids recorded from llama.cpp. */
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tq.h"

/* Pre-tokenizers (BPE). */
enum { PRE_GPT2 = 1, PRE_GPT2_DIGITS, PRE_LLAMA3, PRE_QWEN2 };

/* Class bits of a character in the pre-tokenizer: TQ_UNI_* plus ANY (a character is there at all; llama.cpp's
 * "flags non-zero", which is what stops a run at the end of a chunk). */
#define C_L TQ_UNI_LETTER
#define C_N TQ_UNI_NUMBER
#define C_S TQ_UNI_SPACE
#define C_ANY 8

struct tq_tokenizer {
    int model, pre, ignore_merges;
    char pre_name[32];
    int32_t n_tokens;
    /* Strings: ids < n_tokens are the tokens; BPE interns more (merge parts and results that are not tokens, the
     * byte characters) after them, so merging runs on integer ids. */
    char *blob;
    size_t blob_n, blob_cap;
    uint32_t *soff, *slen;
    int32_t n_str, cap_str;
    struct slot { int32_t id; uint32_t tag; } *stab; /* open addressing: string id (-1 empty), high hash bits */
    uint64_t smask;
    int8_t *type;
    float *score;
    uint32_t max_len; /* longest token, bytes */
    /* BPE merges: (left id, right id) -> rank, result id */
    uint64_t *mkey;
    int32_t *mrank, *mres;
    uint64_t mmask;
    int32_t n_merges;
    int32_t byte_sym[256];     /* BPE: string id of the GPT-2 character of each byte */
    unsigned char byte_chr[256][3]; /* its UTF-8: [0] = length */
    int16_t cp2byte[324];      /* GPT-2 character code point -> byte, -1 */
    int32_t byte_tok[256];     /* SPM: the <0xNN> token (or the one-byte token), -1 */
    uint8_t pre_sp[256];       /* SPM: 1 for a byte some token has right before a U+2581 that begins a run */
    uint8_t cls_lo[256];       /* classes of U+0000..U+00FF */
    int32_t *special;          /* candidates for the partition: longest first */
    int n_special;
    int32_t bos, eos, unk;
    int add_bos, add_eos, add_space_prefix;
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Unicode classes */

int tq_unicode_class(uint32_t cp)
{
    int lo = 0, hi = tq_unicode_n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < tq_unicode_ranges[mid].first) hi = mid - 1;
        else if (cp > tq_unicode_ranges[mid].last) lo = mid + 1;
        else return (int)tq_unicode_ranges[mid].flags;
    }
    return 0;
}

/* Strict UTF-8 (RFC 3629): the code point at s[0..n) and its length, or length 0 when s[0] does not begin a valid
 * sequence (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated). */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int utf8_encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { out[0] = (unsigned char)(0xC0 | (cp >> 6)); out[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12)); out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18)); out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Growable int32 vector */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return tq_error_set(TQ_ERR_NOMEM, "out of memory tokenizing");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return TQ_OK;
}

/* Scratch arrays grown on demand (a tokenize call owns one set; the tokenizer itself stays read-only, so calls
 * from several threads are safe). */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return TQ_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return tq_error_set(TQ_ERR_NOMEM, "out of memory tokenizing");
    *p = q;
    *cap = c;
    return TQ_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* String table */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

static int32_t str_find(const tq_tokenizer *t, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n), i = h & t->smask;
    uint32_t tag = (uint32_t)(h >> 32);
    for (;;) {
        int32_t id = t->stab[i].id;
        if (id < 0) return -1;
        if (t->stab[i].tag == tag && t->slen[id] == n && memcmp(t->blob + t->soff[id], s, n) == 0) return id;
        i = (i + 1) & t->smask;
    }
}

static void str_insert(tq_tokenizer *t, int32_t id, uint64_t h)
{
    uint64_t i = h & t->smask;
    while (t->stab[i].id >= 0) i = (i + 1) & t->smask;
    t->stab[i].id = id;
    t->stab[i].tag = (uint32_t)(h >> 32);
}

/* Add string s (not yet present) as the next id; the table was sized for every string create() adds. */
static int32_t str_add(tq_tokenizer *t, const char *s, size_t n)
{
    if (t->n_str == t->cap_str) return -1;
    if (t->blob_n + n > t->blob_cap) {
        size_t cap = t->blob_cap * 2 + n + 64;
        char *b = realloc(t->blob, cap);
        if (!b) return -1;
        t->blob = b;
        t->blob_cap = cap;
    }
    int32_t id = t->n_str++;
    memcpy(t->blob + t->blob_n, s, n);
    t->soff[id] = (uint32_t)t->blob_n;
    t->slen[id] = (uint32_t)n;
    t->blob_n += n;
    str_insert(t, id, hash_bytes(s, n));
    return id;
}

static int32_t str_intern(tq_tokenizer *t, const char *s, size_t n)
{
    int32_t id = str_find(t, s, n);
    return id >= 0 ? id : str_add(t, s, n);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Merge table (BPE) */

static int64_t merge_slot(const tq_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint64_t i = (h ^ (h >> 31)) & t->mmask;
    for (;;) {
        if (t->mrank[i] < 0 || t->mkey[i] == key) return (int64_t)i;
        i = (i + 1) & t->mmask;
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Construction */

static int pre_kind(const char *name, int *ignore_merges)
{
    static const struct { const char *name; int kind, ignore; } tab[] = {
        {"gpt2", PRE_GPT2, 0}, {"gpt-2", PRE_GPT2, 0},
        {"smollm", PRE_GPT2_DIGITS, 0}, {"starcoder", PRE_GPT2_DIGITS, 0}, {"refact", PRE_GPT2_DIGITS, 0},
        {"codeshell", PRE_GPT2_DIGITS, 0},
        {"llama3", PRE_LLAMA3, 1}, {"llama-v3", PRE_LLAMA3, 1}, {"llama-bpe", PRE_LLAMA3, 1},
        {"qwen2", PRE_QWEN2, 0},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(name, tab[i].name) == 0) {
            *ignore_merges = tab[i].ignore;
            return tab[i].kind;
        }
    return 0;
}

void tq_tokenizer_free(tq_tokenizer *t)
{
    if (!t) return;
    free(t->blob);
    free(t->soff);
    free(t->slen);
    free(t->stab);
    free(t->type);
    free(t->score);
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
    free(t->special);
    free(t);
}

static int is_special_type(int ty)
{
    return ty == TQ_TOKEN_CONTROL || ty == TQ_TOKEN_USER_DEFINED || ty == TQ_TOKEN_UNKNOWN;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int tq_tokenizer_create(const tq_tokenizer_spec *s, tq_tokenizer **out)
{
    *out = NULL;
    if (s->model != TQ_TOK_BPE && s->model != TQ_TOK_SPM)
        return tq_error_set(TQ_ERR_USAGE, "tokenizer model %d is not supported (gpt2 BPE or llama SentencePiece)",
                            s->model);
    if (s->n_tokens <= 0 || !s->tokens) return tq_error_set(TQ_ERR_USAGE, "tokenizer has no tokens");
    if (s->n_tokens > (1 << 30)) return tq_error_set(TQ_ERR_USAGE, "tokenizer has too many tokens (%d)", s->n_tokens);
    if (s->model == TQ_TOK_BPE && s->n_merges < 0) return tq_error_set(TQ_ERR_USAGE, "negative merge count");
    int32_t ids[3] = {s->bos_id, s->eos_id, s->unk_id};
    const char *idn[3] = {"bos", "eos", "unknown"};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= s->n_tokens)
            return tq_error_set(TQ_ERR_USAGE, "%s token id %d is out of range (%d tokens)", idn[i], ids[i],
                                s->n_tokens);
    if (s->add_bos && s->bos_id < 0)
        return tq_error_set(TQ_ERR_USAGE, "the tokenizer adds a bos token but names none (tokenizer.ggml.bos_token_id)");
    if (s->add_eos && s->eos_id < 0)
        return tq_error_set(TQ_ERR_USAGE, "the tokenizer adds an eos token but names none (tokenizer.ggml.eos_token_id)");

    tq_tokenizer *t = tq_calloc(1, sizeof *t);
    if (!t) return TQ_ERR_NOMEM;
    t->model = s->model;
    t->n_tokens = s->n_tokens;
    t->bos = s->bos_id;
    t->eos = s->eos_id;
    t->unk = s->unk_id;
    t->add_bos = !!s->add_bos;
    t->add_eos = !!s->add_eos;
    t->add_space_prefix = s->model == TQ_TOK_SPM && s->add_space_prefix;
    if (s->model == TQ_TOK_BPE) {
        const char *pre = s->pre ? s->pre : "(none)";
        t->pre = pre_kind(pre, &t->ignore_merges);
        if (!t->pre) {
            tq_tokenizer_free(t);
            return tq_error_set(TQ_ERR_USAGE, "pre-tokenizer '%s' is not supported (gpt2, gpt-2, smollm, starcoder, "
                                "refact, codeshell, llama3, llama-v3, llama-bpe, qwen2)", pre);
        }
        snprintf(t->pre_name, sizeof t->pre_name, "%s", pre);
    }
    int64_t n_merges = s->model == TQ_TOK_BPE ? s->n_merges : 0;
    int64_t cap = (int64_t)s->n_tokens + 3 * n_merges + 256;
    uint64_t tcap = 1;
    while (tcap < (uint64_t)cap * 2) tcap <<= 1;
    size_t blob = 0;
    for (int32_t i = 0; i < s->n_tokens; i++) blob += s->tokens[i].len;
    t->blob_cap = blob + 1024;
    t->blob = malloc(t->blob_cap);
    t->cap_str = (int32_t)cap;
    t->soff = malloc((size_t)cap * sizeof *t->soff);
    t->slen = malloc((size_t)cap * sizeof *t->slen);
    t->stab = malloc(tcap * sizeof *t->stab);
    t->smask = tcap - 1;
    t->type = malloc((size_t)s->n_tokens);
    t->score = malloc((size_t)s->n_tokens * sizeof *t->score);
    if (!t->blob || !t->soff || !t->slen || !t->stab || !t->type || !t->score) goto nomem;
    memset(t->stab, 0xff, tcap * sizeof *t->stab);

    /* Tokens. An empty token can never match text (llama.cpp renames it "[EMPTY_i]"); a duplicate text keeps its
     * first id for lookups. */
    for (int32_t i = 0; i < s->n_tokens; i++) {
        const char *p = s->tokens[i].s;
        size_t n = s->tokens[i].len;
        if (n > UINT32_MAX / 2) { tq_tokenizer_free(t); return tq_error_set(TQ_ERR_USAGE, "token %d is too long", i); }
        int ty = s->types ? s->types[i] : TQ_TOKEN_NORMAL;
        t->type[i] = (int8_t)(ty >= TQ_TOKEN_UNDEFINED && ty <= TQ_TOKEN_BYTE ? ty : TQ_TOKEN_UNDEFINED);
        t->score[i] = s->scores ? s->scores[i] : 0.0f;
        memcpy(t->blob + t->blob_n, p, n);
        t->soff[i] = (uint32_t)t->blob_n;
        t->slen[i] = (uint32_t)n;
        t->blob_n += n;
        if (n > t->max_len) t->max_len = (uint32_t)n;
        if (n == 0) continue;
        if (str_find(t, p, n) < 0) str_insert(t, i, hash_bytes(p, n));
    }
    t->n_str = s->n_tokens;

    /* Special-token partition candidates, longest text first (llama.cpp's order), ties by id. */
    int n_sp = 0;
    for (int32_t i = 0; i < s->n_tokens; i++)
        if (is_special_type(t->type[i]) && t->slen[i] > 0) n_sp++;
    t->special = malloc((size_t)(n_sp ? n_sp : 1) * sizeof *t->special);
    if (!t->special) goto nomem;
    {
        /* sort key: (max_len - len) << 31 | id, as a stable order without a context pointer */
        int64_t *key = malloc((size_t)(n_sp ? n_sp : 1) * sizeof *key);
        if (!key) goto nomem;
        int k = 0;
        for (int32_t i = 0; i < s->n_tokens; i++)
            if (is_special_type(t->type[i]) && t->slen[i] > 0)
                key[k++] = ((int64_t)(t->max_len - t->slen[i]) << 31) | i;
        qsort(key, (size_t)n_sp, sizeof *key, cmp_i64);
        for (k = 0; k < n_sp; k++) t->special[k] = (int32_t)(key[k] & 0x7fffffff);
        free(key);
    }
    t->n_special = n_sp;

    if (s->model == TQ_TOK_BPE) {
        /* GPT-2's byte map: printable Latin-1 bytes stand for themselves, the other 68 take U+0100.. in order. */
        int nb = 0;
        for (int i = 0; i < 324; i++) t->cp2byte[i] = -1;
        for (int b = 0; b < 256; b++) {
            int self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            uint32_t cp = self ? (uint32_t)b : 256u + (uint32_t)nb++;
            t->cp2byte[cp] = (int16_t)b;
            t->byte_chr[b][0] = (unsigned char)utf8_encode(cp, &t->byte_chr[b][1]);
        }
        for (int b = 0; b < 256; b++) {
            t->byte_sym[b] = str_intern(t, (const char *)&t->byte_chr[b][1], t->byte_chr[b][0]);
            if (t->byte_sym[b] < 0) goto nomem;
        }
        uint64_t mcap = 1;
        while (mcap < (uint64_t)(n_merges > 0 ? n_merges : 1) * 2) mcap <<= 1;
        t->mkey = malloc(mcap * sizeof *t->mkey);
        t->mrank = malloc(mcap * sizeof *t->mrank);
        t->mres = malloc(mcap * sizeof *t->mres);
        if (!t->mkey || !t->mrank || !t->mres) goto nomem;
        memset(t->mrank, 0xff, mcap * sizeof *t->mrank);
        t->mmask = mcap - 1;
        char *cat = NULL;
        size_t cat_cap = 0;
        for (int32_t r = 0; r < (int32_t)n_merges; r++) {
            const char *p = s->merges[r].s;
            size_t n = s->merges[r].len, sp = 1;
            /* llama.cpp splits at the first space after the first byte */
            while (sp < n && p[sp] != ' ') sp++;
            if (n < 1 || sp >= n) {
                free(cat);
                tq_tokenizer_free(t);
                return tq_error_set(TQ_ERR_USAGE, "merge %d has no space between its two parts", r);
            }
            int32_t a = str_intern(t, p, sp), b = str_intern(t, p + sp + 1, n - sp - 1);
            if (a < 0 || b < 0 || grow((void **)&cat, &cat_cap, n, 1)) { free(cat); goto nomem; }
            memcpy(cat, p, sp);
            memcpy(cat + sp, p + sp + 1, n - sp - 1);
            int32_t res = str_intern(t, cat, n - 1);
            if (res < 0) { free(cat); goto nomem; }
            int64_t slot = merge_slot(t, a, b);
            if (t->mrank[slot] >= 0) continue; /* a repeated pair keeps its first (lowest) rank */
            t->mkey[slot] = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
            t->mrank[slot] = r;
            t->mres[slot] = res;
        }
        free(cat);
        t->n_merges = (int32_t)n_merges;
    } else {
        /* Which bytes end a character that some token continues with U+2581: a text is cut into independent
         * pieces before every other U+2581 that begins a run (no token can span such a cut), so the merge queue
         * stays word-sized. Gemma 3 has one such token, ">\u2581</". */
        for (int32_t i = 0; i < s->n_tokens; i++) {
            const unsigned char *p = (const unsigned char *)t->blob + t->soff[i];
            uint32_t n = t->slen[i];
            for (uint32_t j = 1; j + 3 <= n; j++)
                if (memcmp(p + j, "\xE2\x96\x81", 3) == 0 && !(j >= 3 && memcmp(p + j - 3, "\xE2\x96\x81", 3) == 0))
                    t->pre_sp[p[j - 1]] = 1;
        }
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t id = str_find(t, buf, 6);
            if (id < 0) {
                char c = (char)b;
                id = str_find(t, &c, 1);
            }
            t->byte_tok[b] = id;
        }
    }
    for (int c = 0; c < 256; c++) t->cls_lo[c] = (uint8_t)(tq_unicode_class((uint32_t)c) | C_ANY);
    *out = t;
    return TQ_OK;
nomem:
    tq_tokenizer_free(t);
    return tq_error_set(TQ_ERR_NOMEM, "out of memory building the tokenizer");
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Tokenizing */

/* Per-call scratch. */
typedef struct {
    ivec out;
    /* pre-tokenizer: per character its class bits, code point and byte offset (one past the end included) */
    uint8_t *cls;
    uint32_t *cp, *boff;
    size_t cls_cap, cp_cap, boff_cap;
    /* merging: symbols and the heap */
    int32_t *sid, *prev, *next;
    uint32_t *start, *slen;
    size_t sid_cap, prev_cap, next_cap, start_cap, slen_cap;
    void *heap;
    size_t heap_cap, heap_n;
    char *buf;
    size_t buf_cap;
    /* word cache: a word's ids depend on its bytes alone (BPE: a pre-tokenized word; SPM: a piece between cuts),
     * and English repeats its words, so each call remembers the ids of up to CACHE_MAX distinct short words */
    struct centry { uint64_t h; uint32_t koff, klen, ioff, n; } *ctab;
    size_t cmask, cn, cmax; /* cmax: entries allowed, from the text length (a short text gets a small table) */
    char *keys;
    size_t keys_n, keys_cap;
    int32_t *cids;
    size_t cids_n, cids_cap;
} scratch;

enum { CACHE_MAX = 1 << 16, CACHE_WORD = 48 };

/* Push the cached ids of word s[0..n) and return 1, or return 0 when it is not cached. */
static int cache_get(scratch *w, const char *s, size_t n, uint64_t h)
{
    if (!w->ctab || n > CACHE_WORD) return 0;
    for (size_t i = h & w->cmask;; i = (i + 1) & w->cmask) {
        struct centry *e = &w->ctab[i];
        if (e->klen == UINT32_MAX) return 0;
        if (e->h == h && e->klen == n && memcmp(w->keys + e->koff, s, n) == 0) {
            if (grow((void **)&w->out.v, &w->out.cap, w->out.n + e->n, sizeof *w->out.v)) return -1;
            memcpy(w->out.v + w->out.n, w->cids + e->ioff, e->n * sizeof *w->cids);
            w->out.n += e->n;
            return 1;
        }
    }
}

/* Remember that word s[0..n) gave the ids out[from..]. Best effort: a failed allocation only skips it. */
static void cache_put(scratch *w, const char *s, size_t n, uint64_t h, size_t from)
{
    if (n > CACHE_WORD || w->cn >= w->cmax) return;
    if (!w->ctab) {
        size_t cap = 64;
        while (cap < 2 * w->cmax) cap *= 2;
        w->ctab = malloc(cap * sizeof *w->ctab);
        if (!w->ctab) return;
        for (size_t i = 0; i < cap; i++) w->ctab[i].klen = UINT32_MAX;
        w->cmask = cap - 1;
    }
    size_t ni = w->out.n - from;
    if (grow((void **)&w->keys, &w->keys_cap, w->keys_n + n, 1) ||
        grow((void **)&w->cids, &w->cids_cap, w->cids_n + ni, sizeof *w->cids)) {
        tq_error_clear();
        return;
    }
    size_t i = h & w->cmask;
    while (w->ctab[i].klen != UINT32_MAX) i = (i + 1) & w->cmask;
    struct centry e = {h, (uint32_t)w->keys_n, (uint32_t)n, (uint32_t)w->cids_n, (uint32_t)ni};
    memcpy(w->keys + w->keys_n, s, n);
    memcpy(w->cids + w->cids_n, w->out.v + from, ni * sizeof *w->cids);
    w->keys_n += n;
    w->cids_n += ni;
    w->ctab[i] = e;
    w->cn++;
}

static void scratch_free(scratch *w)
{
    free(w->cls); free(w->cp); free(w->boff);
    free(w->sid); free(w->prev); free(w->next); free(w->start); free(w->slen);
    free(w->heap); free(w->buf);
    free(w->ctab); free(w->keys); free(w->cids);
}

static int symbols_reserve(scratch *w, size_t n)
{
    if (grow((void **)&w->sid, &w->sid_cap, n, sizeof *w->sid) || grow((void **)&w->prev, &w->prev_cap, n, sizeof *w->prev) ||
        grow((void **)&w->next, &w->next_cap, n, sizeof *w->next) ||
        grow((void **)&w->start, &w->start_cap, n, sizeof *w->start) ||
        grow((void **)&w->slen, &w->slen_cap, n, sizeof *w->slen))
        return TQ_ERR_NOMEM;
    return TQ_OK;
}

/* --- BPE: one pre-tokenized word, merges by rank (lowest first, then leftmost), as llama.cpp's queue does. --- */

typedef struct {
    int32_t rank, left, right, lid, rid;
} bpe_pair;

static int bpe_less(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int bpe_push(scratch *w, bpe_pair p)
{
    if (grow(&w->heap, &w->heap_cap, w->heap_n + 1, sizeof(bpe_pair))) return TQ_ERR_NOMEM;
    bpe_pair *h = w->heap;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!bpe_less(&p, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
    return TQ_OK;
}

static bpe_pair bpe_pop(scratch *w)
{
    bpe_pair *h = w->heap, top = h[0], last = h[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpe_less(&h[c + 1], &h[c])) c++;
        if (!bpe_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static int bpe_try(const tq_tokenizer *t, scratch *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return TQ_OK;
    int64_t slot = merge_slot(t, w->sid[l], w->sid[r]);
    if (t->mrank[slot] < 0) return TQ_OK;
    bpe_pair p = {t->mrank[slot], l, r, w->sid[l], w->sid[r]};
    return bpe_push(w, p);
}

/* Emit string id `id` as tokens: itself when it is a token, else (a merge result or byte character outside the
 * vocabulary) each byte of its text that is a one-byte token — llama.cpp's fallback, which drops the others. */
static int bpe_emit(const tq_tokenizer *t, scratch *w, int32_t id)
{
    if (id < t->n_tokens) return ivec_push(&w->out, id);
    const char *s = t->blob + t->soff[id];
    for (uint32_t i = 0; i < t->slen[id]; i++) {
        int32_t b = str_find(t, s + i, 1);
        if (b >= 0 && b < t->n_tokens && ivec_push(&w->out, b)) return TQ_ERR_NOMEM;
    }
    return TQ_OK;
}

static int bpe_word_merge(const tq_tokenizer *t, scratch *w, const unsigned char *s, size_t n);

static int bpe_word(const tq_tokenizer *t, scratch *w, const unsigned char *s, size_t n)
{
    if (n == 0) return TQ_OK;
    if (n == 1 && !t->ignore_merges) return bpe_emit(t, w, t->byte_sym[s[0]]);
    uint64_t h = hash_bytes((const char *)s, n);
    int c = cache_get(w, (const char *)s, n, h);
    if (c) return c < 0 ? TQ_ERR_NOMEM : TQ_OK;
    size_t from = w->out.n;
    int rc = bpe_word_merge(t, w, s, n);
    if (rc == TQ_OK) cache_put(w, (const char *)s, n, h, from);
    return rc;
}

static int bpe_word_merge(const tq_tokenizer *t, scratch *w, const unsigned char *s, size_t n)
{
    if (t->ignore_merges) { /* Llama 3: a word that is a token as a whole is that token */
        if (grow((void **)&w->buf, &w->buf_cap, 2 * n, 1)) return TQ_ERR_NOMEM;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(w->buf + m, &t->byte_chr[s[i]][1], t->byte_chr[s[i]][0]);
            m += t->byte_chr[s[i]][0];
        }
        int32_t id = str_find(t, w->buf, m);
        if (id >= 0 && id < t->n_tokens) return ivec_push(&w->out, id);
    }
    if (n == 1) return bpe_emit(t, w, t->byte_sym[s[0]]);
    if (symbols_reserve(w, n)) return TQ_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        w->sid[i] = t->byte_sym[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        w->slen[i] = 1; /* alive */
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (bpe_try(t, w, (int32_t)i, (int32_t)i + 1)) return TQ_ERR_NOMEM;
    while (w->heap_n) {
        bpe_pair p = bpe_pop(w);
        /* stale: either side merged away or grown since the pair was queued (a grown symbol has a new id) */
        if (!w->slen[p.left] || !w->slen[p.right] || w->sid[p.left] != p.lid || w->sid[p.right] != p.rid) continue;
        int64_t slot = merge_slot(t, p.lid, p.rid);
        w->sid[p.left] = t->mres[slot];
        w->slen[p.right] = 0;
        w->next[p.left] = w->next[p.right];
        if (w->next[p.right] >= 0) w->prev[w->next[p.right]] = p.left;
        if (bpe_try(t, w, w->prev[p.left], p.left) || bpe_try(t, w, p.left, w->next[p.left])) return TQ_ERR_NOMEM;
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (bpe_emit(t, w, w->sid[i])) return TQ_ERR_NOMEM;
    return TQ_OK;
}

/* The pre-tokenizer regexes, hand-written as llama.cpp's unicode.cpp does (same alternatives in the same order),
 * over the characters [ini, end) of a chunk. Each word found is handed to bpe_word. */
#define CLS(p) ((p) >= ini && (p) < end ? w->cls[p] : 0)
#define CPT(p) ((p) >= ini && (p) < end ? w->cp[p] : 0xFFFFFFFFu)
#define EMIT(to) do { size_t to_ = (to); \
        if (to_ > prev_end && bpe_word(t, w, text + w->boff[prev_end], w->boff[to_] - w->boff[prev_end])) \
            return TQ_ERR_NOMEM; \
        prev_end = to_; } while (0)

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive for Llama 3 / Qwen2): the length matched at pos, or 0 */
static size_t contraction(const scratch *w, size_t pos, size_t end, int fold)
{
    if (w->cp[pos] != '\'' || pos + 1 >= end) return 0;
    uint32_t a = fold ? ascii_lower(w->cp[pos + 1]) : w->cp[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t b = fold ? ascii_lower(w->cp[pos + 2]) : w->cp[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int split_gpt2(const tq_tokenizer *t, scratch *w, const unsigned char *text, size_t ini, size_t end)
{
    size_t pos = ini, prev_end = ini;
    while (pos < end) {
        uint32_t c = w->cp[pos];
        uint8_t f = w->cls[pos];
        size_t k = contraction(w, pos, end, 0);
        if (k) { pos += k; EMIT(pos); continue; }
        uint8_t f2 = c == ' ' ? CLS(pos + 1) : f;
        if (f2 & C_L) {
            pos += c == ' ';
            while (CLS(pos) & C_L) pos++;
            EMIT(pos);
            continue;
        }
        if (f2 & C_N) {
            pos += c == ' ';
            while (CLS(pos) & C_N) pos++;
            EMIT(pos);
            continue;
        }
        if (!(f2 & (C_S | C_L | C_N)) && (f2 & C_ANY)) {
            pos += c == ' ';
            while (!(CLS(pos) & (C_S | C_L | C_N)) && (CLS(pos) & C_ANY)) pos++;
            EMIT(pos);
            continue;
        }
        size_t nws = 0;
        while (CLS(pos + nws) & C_S) nws++;
        if (nws > 1 && pos + nws < end) { pos += nws - 1; EMIT(pos); continue; } /* \s+(?!\S) */
        if (nws > 0) { pos += nws; EMIT(pos); continue; }
        pos++;
        EMIT(pos);
    }
    return TQ_OK;
}

/* Llama 3 (max_digits 3) and Qwen2 (1): (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static int split_llama3(const tq_tokenizer *t, scratch *w, const unsigned char *text, size_t ini, size_t end,
                        size_t max_digits)
{
    size_t pos = ini, prev_end = ini;
    while (pos < end) {
        uint32_t c = w->cp[pos];
        uint8_t f = w->cls[pos];
        size_t k = contraction(w, pos, end, 1);
        if (k) { pos += k; EMIT(pos); continue; }
        if (!(c == '\r' || c == '\n' || (f & C_N)) && ((f & C_L) || (CLS(pos + 1) & C_L))) {
            pos++;
            while (CLS(pos) & C_L) pos++;
            EMIT(pos);
            continue;
        }
        if (f & C_N) {
            size_t run = pos;
            while (CLS(pos) & C_N) {
                pos++;
                if (pos - run >= max_digits) { EMIT(pos); run = pos; }
            }
            EMIT(pos);
            continue;
        }
        uint8_t f2 = c == ' ' ? CLS(pos + 1) : f;
        if (!(f2 & (C_S | C_L | C_N)) && (f & C_ANY)) {
            pos += c == ' ';
            while (!(CLS(pos) & (C_S | C_L | C_N)) && (CLS(pos) & C_ANY)) pos++;
            while (CPT(pos) == '\r' || CPT(pos) == '\n') pos++;
            EMIT(pos);
            continue;
        }
        size_t nws = 0, last_nl = 0;
        while (CLS(pos + nws) & C_S) {
            uint32_t c2 = w->cp[pos + nws];
            if (c2 == '\r' || c2 == '\n') last_nl = pos + nws + 1;
            nws++;
        }
        if (last_nl) { pos = last_nl; EMIT(pos); continue; } /* \s*[\r\n]+ */
        if (nws > 1 && pos + nws < end) { pos += nws - 1; EMIT(pos); continue; }
        if (nws > 0) { pos += nws; EMIT(pos); continue; }
        pos++;
        EMIT(pos);
    }
    return TQ_OK;
}
#undef CLS
#undef CPT
#undef EMIT

static int bpe_text(const tq_tokenizer *t, scratch *w, const unsigned char *text, size_t len)
{
    /* characters: strict UTF-8; an invalid byte is a character of its own with no class but C_ANY */
    if (grow((void **)&w->cls, &w->cls_cap, len + 1, 1) || grow((void **)&w->cp, &w->cp_cap, len + 1, sizeof *w->cp) ||
        grow((void **)&w->boff, &w->boff_cap, len + 1, sizeof *w->boff))
        return TQ_ERR_NOMEM;
    size_t m = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        int k = utf8_decode(text + i, len - i, &cp);
        if (k == 0) { cp = 0xFFFD; k = 1; w->cls[m] = C_ANY; }
        else w->cls[m] = cp < 256 ? t->cls_lo[cp] : (uint8_t)(tq_unicode_class(cp) | C_ANY);
        if (k == 1 && text[i] >= 0x80) w->cls[m] = C_ANY; /* the invalid byte keeps no class */
        w->cp[m] = cp;
        w->boff[m] = (uint32_t)i;
        m++;
        i += (size_t)k;
    }
    w->boff[m] = (uint32_t)len;
    if (t->pre == PRE_LLAMA3) return split_llama3(t, w, text, 0, m, 3);
    if (t->pre == PRE_QWEN2) return split_llama3(t, w, text, 0, m, 1);
    if (t->pre == PRE_GPT2) return split_gpt2(t, w, text, 0, m);
    /* PRE_GPT2_DIGITS: every \p{N} character is a chunk of its own, the runs between are chunks */
    size_t a = 0;
    for (size_t j = 0; j < m; j++) {
        if (!(w->cls[j] & C_N)) continue;
        if (j > a && split_gpt2(t, w, text, a, j)) return TQ_ERR_NOMEM;
        if (split_gpt2(t, w, text, j, j + 1)) return TQ_ERR_NOMEM;
        a = j + 1;
    }
    if (m > a) return split_gpt2(t, w, text, a, m);
    return TQ_OK;
}

/* --- SPM: merges of adjacent symbols whose concatenation is a token, highest score first, then leftmost. --- */

typedef struct {
    float score;
    int32_t left, right, id;
    uint32_t size;
} spm_pair;

static int spm_less(const spm_pair *a, const spm_pair *b) /* "comes out first" */
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int spm_push(scratch *w, spm_pair p)
{
    if (grow(&w->heap, &w->heap_cap, w->heap_n + 1, sizeof(spm_pair))) return TQ_ERR_NOMEM;
    spm_pair *h = w->heap;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!spm_less(&p, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
    return TQ_OK;
}

static spm_pair spm_pop(scratch *w)
{
    spm_pair *h = w->heap, top = h[0], last = h[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && spm_less(&h[c + 1], &h[c])) c++;
        if (!spm_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static int spm_try(const tq_tokenizer *t, scratch *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return TQ_OK;
    uint32_t size = w->slen[l] + w->slen[r];
    if (size > t->max_len) return TQ_OK;
    int32_t id = str_find(t, w->buf + w->start[l], size);
    if (id < 0) return TQ_OK;
    spm_pair p = {t->score[id], l, r, id, size};
    return spm_push(w, p);
}

static int spm_text(const tq_tokenizer *t, scratch *w, const unsigned char *text, size_t len, int prefix)
{
    /* escaped copy: optional leading space, every ' ' as U+2581 */
    size_t nsp = prefix;
    for (size_t i = 0; i < len; i++) nsp += text[i] == ' ';
    size_t n = len + prefix + 2 * nsp;
    if (n == 0) return TQ_OK;
    if (grow((void **)&w->buf, &w->buf_cap, n, 1)) return TQ_ERR_NOMEM;
    size_t m = 0;
    if (prefix) { memcpy(w->buf, "\xE2\x96\x81", 3); m = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(w->buf + m, "\xE2\x96\x81", 3); m += 3; }
        else w->buf[m++] = (char)text[i];
    }
    /* symbols: the characters, strict UTF-8, a byte that begins no valid sequence on its own. (llama.cpp takes the
     * length its lead byte announces, the same on valid text; on invalid text that could swallow the first byte of
     * a U+2581 and break the round trip.) */
    if (symbols_reserve(w, n)) return TQ_ERR_NOMEM;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = (size_t)utf8_decode((const unsigned char *)w->buf + i, n - i, &cp);
        if (k == 0) k = 1;
        w->start[ns] = (uint32_t)i;
        w->slen[ns] = (uint32_t)k;
        w->sid[ns] = str_find(t, w->buf + i, k);
        w->prev[ns] = ns - 1;
        w->next[ns] = ns + 1;
        ns++;
        i += k;
    }
    w->next[ns - 1] = -1;
    /* merge each piece between cuts on its own (see pre_sp); the result is the whole text's */
    int32_t a = 0;
    while (a < ns) {
        int32_t b = a + 1;
        while (b < ns) {
            const unsigned char *q = (const unsigned char *)w->buf + w->start[b];
            const unsigned char *pq = (const unsigned char *)w->buf + w->start[b - 1];
            if (w->slen[b] == 3 && memcmp(q, "\xE2\x96\x81", 3) == 0 &&
                !(w->slen[b - 1] == 3 && memcmp(pq, "\xE2\x96\x81", 3) == 0) && !t->pre_sp[q[-1]])
                break;
            b++;
        }
        const char *key = w->buf + w->start[a];
        size_t klen = (b < ns ? w->start[b] : n) - w->start[a];
        uint64_t h = hash_bytes(key, klen);
        int c = cache_get(w, key, klen, h);
        if (c < 0) return TQ_ERR_NOMEM;
        if (c) { a = b; continue; }
        size_t from = w->out.n;
        w->prev[a] = -1;
        w->next[b - 1] = -1;
        w->heap_n = 0;
        for (int32_t i = a; i + 1 < b; i++)
            if (spm_try(t, w, i, i + 1)) return TQ_ERR_NOMEM;
        while (w->heap_n) {
            spm_pair p = spm_pop(w);
            if (!w->slen[p.left] || !w->slen[p.right] || w->slen[p.left] + w->slen[p.right] != p.size) continue;
            w->slen[p.left] += w->slen[p.right];
            w->slen[p.right] = 0;
            w->sid[p.left] = p.id;
            w->next[p.left] = w->next[p.right];
            if (w->next[p.right] >= 0) w->prev[w->next[p.right]] = p.left;
            if (spm_try(t, w, w->prev[p.left], p.left) || spm_try(t, w, p.left, w->next[p.left])) return TQ_ERR_NOMEM;
        }
        for (int32_t i = a; i >= 0; i = w->next[i]) {
            if (w->sid[i] >= 0) {
                if (ivec_push(&w->out, w->sid[i])) return TQ_ERR_NOMEM;
                continue;
            }
            /* a character no token spells: its bytes as byte tokens (<0xNN>), else the unknown token */
            for (uint32_t j = 0; j < w->slen[i]; j++) {
                unsigned char c = (unsigned char)w->buf[w->start[i] + j];
                int32_t id = t->byte_tok[c] >= 0 ? t->byte_tok[c] : t->unk;
                if (id < 0)
                    return tq_error_set(TQ_ERR, "the vocabulary has no byte token '<0x%02X>' and no unknown token", c);
                if (ivec_push(&w->out, id)) return TQ_ERR_NOMEM;
            }
        }
        cache_put(w, key, klen, h, from);
        a = b;
    }
    return TQ_OK;
}

/* --- special-token partition: text -> fragments (raw text or one token), llama.cpp's tokenizer_st_partition --- */

typedef struct {
    size_t off, len;
    int32_t id; /* -1: raw text */
} frag;

typedef struct {
    frag *v;
    size_t n, cap;
} fvec;

static int fvec_push(fvec *a, frag f)
{
    if (grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return TQ_ERR_NOMEM;
    a->v[a->n++] = f;
    return TQ_OK;
}

/* First occurrence of needle (nl >= 1 bytes) in hay, or NULL: memchr on the first byte, then compare. */
static const char *find_bytes(const char *hay, size_t hl, const char *needle, size_t nl)
{
    const char *p = hay, *end = hay + hl;
    while ((size_t)(end - p) >= nl) {
        p = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, nl) == 0) return p;
        p++;
    }
    return NULL;
}

static int partition(const tq_tokenizer *t, const char *text, size_t len, int parse_special, fvec *fr)
{
    fr->n = 0;
    if (len == 0) return TQ_OK;
    frag all = {0, len, -1};
    if (fvec_push(fr, all)) return TQ_ERR_NOMEM;
    fvec nx = {0};
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->type[id] != TQ_TOKEN_USER_DEFINED) continue;
        const char *s = t->blob + t->soff[id];
        size_t sl = t->slen[id];
        if (!find_bytes(text, len, s, sl)) continue; /* cheap skip: nowhere in the text */
        nx.n = 0;
        for (size_t i = 0; i < fr->n; i++) {
            frag f = fr->v[i];
            if (f.id >= 0) { if (fvec_push(&nx, f)) goto nomem; continue; }
            size_t pos = f.off, end = f.off + f.len;
            while (pos < end) {
                const char *hit = find_bytes(text + pos, end - pos, s, sl);
                if (!hit) {
                    frag r = {pos, end - pos, -1};
                    if (fvec_push(&nx, r)) goto nomem;
                    break;
                }
                size_t at = (size_t)(hit - text);
                if (at > pos) {
                    frag l = {pos, at - pos, -1};
                    if (fvec_push(&nx, l)) goto nomem;
                }
                frag tk = {at, sl, id};
                if (fvec_push(&nx, tk)) goto nomem;
                pos = at + sl;
            }
        }
        fvec tmp = *fr;
        *fr = nx;
        nx = tmp;
    }
    free(nx.v);
    return TQ_OK;
nomem:
    free(nx.v);
    return tq_error_set(TQ_ERR_NOMEM, "out of memory tokenizing");
}

int tq_tokenize(const tq_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (len > 0x3fffffff) return tq_error_set(TQ_ERR_USAGE, "text of %zu bytes is too long to tokenize in one call", len);
    if (len && !text) return tq_error_set(TQ_ERR_USAGE, "no text to tokenize");
    scratch w = {0};
    w.cmax = len / 8 + 16 < CACHE_MAX ? len / 8 + 16 : CACHE_MAX; /* about one word in eight bytes: plenty */
    fvec fr = {0};
    int rc = TQ_OK;
    int add_special = flags & TQ_TOKENIZE_ADD_SPECIAL;
    if (add_special && t->add_bos && (rc = ivec_push(&w.out, t->bos))) goto done;
    if ((rc = partition(t, text, len, flags & TQ_TOKENIZE_PARSE_SPECIAL, &fr))) goto done;
    int prev_special = 1; /* SPM: a space prefix goes before the first text and any text after a special token */
    for (size_t i = 0; i < fr.n; i++) {
        const frag *f = &fr.v[i];
        if (f->id >= 0) {
            if ((rc = ivec_push(&w.out, f->id))) goto done;
            prev_special = 1;
            continue;
        }
        const unsigned char *s = (const unsigned char *)text + f->off;
        rc = t->model == TQ_TOK_BPE ? bpe_text(t, &w, s, f->len)
                                    : spm_text(t, &w, s, f->len, t->add_space_prefix && prev_special);
        if (rc) goto done;
        prev_special = 0;
    }
    if (add_special && t->add_eos && (rc = ivec_push(&w.out, t->eos))) goto done;
    if (w.out.n > 0x7fffffff) { rc = tq_error_set(TQ_ERR_USAGE, "too many tokens"); goto done; }
done:
    if (rc == TQ_OK) {
        *ids = w.out.v;
        *n = (int)w.out.n;
        w.out.v = NULL;
        if (*n == 0) { free(*ids); *ids = NULL; }
    }
    free(w.out.v);
    free(fr.v);
    scratch_free(&w);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Detokenizing */

typedef struct {
    char *s;
    size_t n, cap;
} bvec;

static int bvec_add(bvec *b, const void *p, size_t n)
{
    if (grow((void **)&b->s, &b->cap, b->n + n + 1, 1)) return TQ_ERR_NOMEM;
    memcpy(b->s + b->n, p, n);
    b->n += n;
    return TQ_OK;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The bytes of one token (no space stripping). */
static int piece(const tq_tokenizer *t, int32_t id, int special, bvec *b)
{
    const char *s = t->blob + t->soff[id];
    size_t n = t->slen[id];
    switch (t->type[id]) {
    case TQ_TOKEN_CONTROL:
    case TQ_TOKEN_UNKNOWN:
        return special ? bvec_add(b, s, n) : TQ_OK;
    case TQ_TOKEN_USER_DEFINED:
        return bvec_add(b, s, n);
    case TQ_TOKEN_BYTE:
        if (n >= 6 && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
            char c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
            return bvec_add(b, &c, 1);
        }
        return bvec_add(b, s, n);
    case TQ_TOKEN_NORMAL:
        break;
    default: /* unused, undefined */
        return TQ_OK;
    }
    if (t->model == TQ_TOK_SPM) {
        size_t i = 0;
        while (i < n) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                if (bvec_add(b, " ", 1)) return TQ_ERR_NOMEM;
                i += 3;
            } else {
                if (bvec_add(b, s + i, 1)) return TQ_ERR_NOMEM;
                i++;
            }
        }
        return TQ_OK;
    }
    /* GPT-2 byte map inverse; a character outside the map (not produced by this tokenizer) passes as is */
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k > 0 && cp < 324 && t->cp2byte[cp] >= 0) {
            char c = (char)t->cp2byte[cp];
            if (bvec_add(b, &c, 1)) return TQ_ERR_NOMEM;
        } else {
            if (k == 0) k = 1;
            if (bvec_add(b, s + i, (size_t)k)) return TQ_ERR_NOMEM;
        }
        i += (size_t)k;
    }
    return TQ_OK;
}

int tq_detokenize(const tq_tokenizer *t, const int32_t *ids, int n, int flags, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    bvec b = {0};
    if (grow((void **)&b.s, &b.cap, 64, 1)) return TQ_ERR_NOMEM;
    int strip = t->add_space_prefix; /* the space the tokenizer put before the text */
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_tokens) {
            free(b.s);
            return tq_error_set(TQ_ERR_USAGE, "token id %d at position %d is out of range (%d tokens)", id, i,
                                t->n_tokens);
        }
        size_t at = b.n;
        if (piece(t, id, flags & TQ_DETOKENIZE_SPECIAL, &b)) { free(b.s); return TQ_ERR_NOMEM; }
        if (t->type[id] == TQ_TOKEN_CONTROL || t->type[id] == TQ_TOKEN_UNKNOWN) continue;
        if (strip && b.n > at && b.s[at] == ' ') {
            memmove(b.s + at, b.s + at + 1, b.n - at - 1);
            b.n--;
        }
        strip = 0;
    }
    b.s[b.n] = 0;
    *text = b.s;
    *len = b.n;
    return TQ_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Accessors, description, rendering */

int32_t tq_tokenizer_n_vocab(const tq_tokenizer *t) { return t->n_tokens; }
int32_t tq_tokenizer_bos(const tq_tokenizer *t) { return t->bos; }
int32_t tq_tokenizer_eos(const tq_tokenizer *t) { return t->eos; }
int tq_tokenizer_model(const tq_tokenizer *t) { return t->model; }

const char *tq_tokenizer_token(const tq_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_tokens) { if (len) *len = 0; return NULL; }
    if (len) *len = t->slen[id];
    return t->blob + t->soff[id];
}

int tq_tokenizer_token_type(const tq_tokenizer *t, int32_t id)
{
    return id < 0 || id >= t->n_tokens ? -1 : t->type[id];
}

int tq_tokenizer_describe(const tq_tokenizer *t, char *buf, size_t cap)
{
    char bos[48], eos[48];
    if (t->bos >= 0) snprintf(bos, sizeof bos, "bos %d (%s)", t->bos, t->add_bos ? "added" : "not added");
    else snprintf(bos, sizeof bos, "no bos");
    if (t->eos >= 0) snprintf(eos, sizeof eos, "eos %d%s", t->eos, t->add_eos ? " (added)" : "");
    else snprintf(eos, sizeof eos, "no eos");
    if (t->model == TQ_TOK_BPE)
        return snprintf(buf, cap, "gpt2 byte-level BPE, pre-tokenizer '%s', %d tokens, %d merges, %s, %s",
                        t->pre_name, t->n_tokens, t->n_merges, bos, eos);
    return snprintf(buf, cap, "llama SentencePiece BPE with byte fallback, %d tokens, %s, %s, %s", t->n_tokens, bos,
                    eos, t->add_space_prefix ? "space prefix" : "no space prefix");
}

int tq_tokenizer_render(const tq_tokenizer *t, const int32_t *ids, int n, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    bvec b = {0}, p = {0};
    int rc = TQ_OK;
    if ((rc = grow((void **)&b.s, &b.cap, 64, 1))) return rc;
    for (int i = 0; i < n && rc == TQ_OK; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens) {
            rc = tq_error_set(TQ_ERR_USAGE, "token id %d at position %d is out of range (%d tokens)", ids[i], i,
                              t->n_tokens);
            break;
        }
        char num[24];
        int k = snprintf(num, sizeof num, "%d\t", ids[i]);
        p.n = 0;
        if ((rc = bvec_add(&b, num, (size_t)k)) || (rc = piece(t, ids[i], 1, &p))) break;
        for (size_t j = 0; j < p.n && rc == TQ_OK; j++) {
            unsigned char c = (unsigned char)p.s[j];
            char e[8];
            int m;
            if (c == '\n') m = snprintf(e, sizeof e, "\\n");
            else if (c == '\t') m = snprintf(e, sizeof e, "\\t");
            else if (c == '\\') m = snprintf(e, sizeof e, "\\\\");
            else if (c < 0x20 || c >= 0x7f) m = snprintf(e, sizeof e, "\\x%02x", c);
            else { e[0] = (char)c; m = 1; }
            rc = bvec_add(&b, e, (size_t)m);
        }
        if (rc == TQ_OK) rc = bvec_add(&b, "\n", 1);
    }
    free(p.s);
    if (rc) { free(b.s); return rc; }
    b.s[b.n] = 0;
    *out = b.s;
    *len = b.n;
    return TQ_OK;
}

/* The bytes allowed after lead byte c at continuation index 1 (the second byte is narrower after E0, ED, F0 and F4:
 * overlongs, surrogates and code points past U+10FFFF are excluded there), or 0 when c leads no sequence. */
static int utf8_second_ok(unsigned c, unsigned b)
{
    if (c == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (c == 0xED) return b >= 0x80 && b <= 0x9F;
    if (c == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (c == 0xF4) return b >= 0x80 && b <= 0x8F;
    return (b & 0xC0) == 0x80;
}

int tq_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    /* each input byte yields at most 3 output bytes (a stray byte -> U+FFFD) */
    if (len > (SIZE_MAX - 1) / 3) return TQ_ERR_NOMEM;
    unsigned char *o = malloc(3 * len + 1);
    if (!o) return TQ_ERR_NOMEM;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = utf8_decode(u + i, len - i, &cp);
        if (k > 0) {
            memcpy(o + n, u + i, (size_t)k);
            n += (size_t)k;
            i += (size_t)k;
            continue;
        }
        /* ill-formed: swallow the lead byte and the continuation bytes that still fit its pattern */
        unsigned c = u[i];
        size_t want = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t j = 1;
        while (j < want && i + j < len && (j == 1 ? utf8_second_ok(c, u[i + j]) : (u[i + j] & 0xC0) == 0x80)) j++;
        memcpy(o + n, "\xEF\xBF\xBD", 3);
        n += 3;
        i += j;
    }
    o[n] = 0;
    *out = (char *)o;
    *out_len = n;
    return TQ_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* From GGUF metadata */

typedef struct {
    tq_gguf_str *tokens, *merges;
    int32_t *types;
    float *scores;
    char pre[64];
} spec_owned;

void tq_tokenizer_spec_free(tq_tokenizer_spec *spec)
{
    spec_owned *o = spec->owned_;
    if (o) {
        free(o->tokens);
        free(o->merges);
        free(o->types);
        free(o->scores);
        free(o);
    }
    memset(spec, 0, sizeof *spec);
}

/* A string array key into a freshly allocated tq_gguf_str array. */
static int gguf_str_array(const tq_gguf *g, const char *key, tq_gguf_str **out, int64_t *n, int required)
{
    int et;
    uint64_t cnt;
    *out = NULL;
    *n = 0;
    int rc = tq_gguf_get_arr(g, key, &et, &cnt);
    if (rc == 1) return required ? tq_error_set(TQ_ERR, "no '%s' in the metadata", key) : TQ_OK;
    if (rc < 0) return rc;
    if (et != TQ_GGUF_STRING) return tq_error_set(TQ_ERR, "'%s' is not an array of strings", key);
    if (cnt > (1u << 30)) return tq_error_set(TQ_ERR, "'%s' has %llu entries, too many", key, (unsigned long long)cnt);
    tq_gguf_str *a = malloc((size_t)(cnt ? cnt : 1) * sizeof *a);
    if (!a) return tq_error_set(TQ_ERR_NOMEM, "out of memory reading '%s'", key);
    for (uint64_t i = 0; i < cnt; i++)
        if ((rc = tq_gguf_arr_str(g, key, i, &a[i]))) { free(a); return rc; }
    *out = a;
    *n = (int64_t)cnt;
    return TQ_OK;
}

/* A numeric array of `n` 4-byte elements of type `et` (I32 or F32) into an aligned copy; absent -> NULL. */
static int gguf_arr4(const tq_gguf *g, const char *key, int et, int64_t n, void **out)
{
    int t;
    uint64_t cnt;
    *out = NULL;
    int rc = tq_gguf_get_arr(g, key, &t, &cnt);
    if (rc == 1) return TQ_OK;
    if (rc < 0) return rc;
    if (t != et) return tq_error_set(TQ_ERR, "'%s' is an array of type %d, expected %s", key, t,
                                     et == TQ_GGUF_F32 ? "float32" : "int32");
    if ((int64_t)cnt < n)
        return tq_error_set(TQ_ERR, "'%s' has %llu entries for %lld tokens", key, (unsigned long long)cnt, (long long)n);
    uint64_t c2;
    const void *p = tq_gguf_arr_data(g, key, et, &c2);
    if (!p) return tq_error_set(TQ_ERR, "cannot read '%s'", key);
    void *a = malloc((size_t)(n ? n : 1) * 4);
    if (!a) return tq_error_set(TQ_ERR_NOMEM, "out of memory reading '%s'", key);
    memcpy(a, p, (size_t)n * 4);
    *out = a;
    return TQ_OK;
}

static int gguf_opt_int(const tq_gguf *g, const char *key, int64_t *v, int64_t dflt)
{
    int rc = tq_gguf_get_int(g, key, v);
    if (rc == 1) { *v = dflt; return TQ_OK; }
    return rc;
}

int tq_tokenizer_spec_from_gguf(const tq_gguf *g, tq_tokenizer_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec_owned *o = tq_calloc(1, sizeof *o);
    if (!o) return TQ_ERR_NOMEM;
    spec->owned_ = o;
    int rc;
    tq_gguf_str model;
    rc = tq_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc == 1) { rc = tq_error_set(TQ_ERR, "no tokenizer in the metadata (tokenizer.ggml.model)"); goto fail; }
    if (rc < 0) goto fail;
    if (model.len == 4 && memcmp(model.s, "gpt2", 4) == 0) spec->model = TQ_TOK_BPE;
    else if (model.len == 5 && memcmp(model.s, "llama", 5) == 0) spec->model = TQ_TOK_SPM;
    else {
        rc = tq_error_set(TQ_ERR, "tokenizer '%.*s' is not supported (gpt2 byte-level BPE and llama SentencePiece are)",
                          (int)(model.len > 64 ? 64 : model.len), model.s);
        goto fail;
    }
    int64_t n = 0, nm = 0;
    if ((rc = gguf_str_array(g, "tokenizer.ggml.tokens", &o->tokens, &n, 1))) goto fail;
    if (n == 0) { rc = tq_error_set(TQ_ERR, "'tokenizer.ggml.tokens' is empty"); goto fail; }
    spec->n_tokens = (int32_t)n;
    spec->tokens = o->tokens;
    if ((rc = gguf_arr4(g, "tokenizer.ggml.token_type", TQ_GGUF_I32, n, (void **)&o->types))) goto fail;
    spec->types = o->types;
    if (spec->model == TQ_TOK_SPM) {
        if ((rc = gguf_arr4(g, "tokenizer.ggml.scores", TQ_GGUF_F32, n, (void **)&o->scores))) goto fail;
        spec->scores = o->scores;
    } else {
        if ((rc = gguf_str_array(g, "tokenizer.ggml.merges", &o->merges, &nm, 1))) goto fail;
        spec->n_merges = (int32_t)nm;
        spec->merges = o->merges;
        tq_gguf_str pre;
        rc = tq_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        if (rc < 0) goto fail;
        if (rc == 1) snprintf(o->pre, sizeof o->pre, "default");
        else snprintf(o->pre, sizeof o->pre, "%.*s", (int)(pre.len > 63 ? 63 : pre.len), pre.s);
        spec->pre = o->pre;
    }
    /* llama.cpp's defaults where a key is absent: SentencePiece models name bos 1, eos 2, unk 0, add bos and a
     * space prefix; BPE models add nothing except Llama 3's pre-tokenizers, which add bos. */
    int spm = spec->model == TQ_TOK_SPM;
    int ignore = 0;
    int llama3 = !spm && pre_kind(o->pre, &ignore) == PRE_LLAMA3;
    int64_t bos, eos, unk, abos, aeos, asp;
    if ((rc = gguf_opt_int(g, "tokenizer.ggml.bos_token_id", &bos, spm ? 1 : -1)) ||
        (rc = gguf_opt_int(g, "tokenizer.ggml.eos_token_id", &eos, spm ? 2 : -1)) ||
        (rc = gguf_opt_int(g, "tokenizer.ggml.unknown_token_id", &unk, spm ? 0 : -1)) ||
        (rc = gguf_opt_int(g, "tokenizer.ggml.add_bos_token", &abos, spm || llama3)) ||
        (rc = gguf_opt_int(g, "tokenizer.ggml.add_eos_token", &aeos, 0)) ||
        (rc = gguf_opt_int(g, "tokenizer.ggml.add_space_prefix", &asp, spm)))
        goto fail;
    const int64_t idv[3] = {bos, eos, unk};
    const char *idk[3] = {"bos_token_id", "eos_token_id", "unknown_token_id"};
    for (int i = 0; i < 3; i++)
        if (idv[i] < -1 || idv[i] >= n) {
            rc = tq_error_set(TQ_ERR, "tokenizer.ggml.%s %lld is out of range (%lld tokens)", idk[i],
                              (long long)idv[i], (long long)n);
            goto fail;
        }
    spec->bos_id = (int32_t)bos;
    spec->eos_id = (int32_t)eos;
    spec->unk_id = (int32_t)unk;
    spec->add_bos = abos != 0;
    spec->add_eos = aeos != 0;
    spec->add_space_prefix = asp != 0;
    return TQ_OK;
fail:
    tq_tokenizer_spec_free(spec);
    return rc;
}

int tq_tokenizer_from_gguf(const tq_gguf *g, tq_tokenizer **out)
{
    *out = NULL;
    tq_tokenizer_spec spec;
    int rc = tq_tokenizer_spec_from_gguf(g, &spec);
    if (rc) return tq_error_prefix(rc, "'%s': ", tq_gguf_path(g));
    rc = tq_tokenizer_create(&spec, out);
    tq_tokenizer_spec_free(&spec);
    if (rc) return tq_error_prefix(rc, "'%s': ", tq_gguf_path(g));
    return TQ_OK;
}
