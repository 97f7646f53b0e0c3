/* test_tokenizer.c: lib/tokenizer against hand-derived ids on small synthetic vocabularies, against naive reference
 * merges (quadratic rescans, written independently of the library's queues, word cache and SentencePiece cuts) on
 * the real vocabularies, and against the ids llama.cpp gave for both bundled models (tests/golden/tokens/tokens_*.txt,
 * recorded by tests/py/test_tokenizer_llama.py --write), plus round trips. Real-model parts skip when the models
 * are not fetched. With arguments it is a driver for tests/py: test_tokenizer --ids MODEL.gguf [--flags N] [--pre P]
 * FILE... prints the ids of each FILE on one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "rng.h"
#include "tokenizer.h"
#include "tq.h"
#include "tq_test.h"

/* ---------------------------------------------------------------- helpers */

static int tokenize(const tq_tokenizer *t, const char *s, size_t n, int flags, int32_t **ids)
{
    int cnt = -1;
    if (tq_tokenize(t, s, n, flags, ids, &cnt)) return -1;
    return cnt;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb, const char *what)
{
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    if (i == na && na == nb) return 1;
    fprintf(stderr, "  %s: first difference at %d of %d/%d: got %d, want %d\n", what, i, na, nb, i < na ? a[i] : -1,
            i < nb ? b[i] : -1);
    return 0;
}

static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[len] = 0; *n = (size_t)len; }
    return b;
}

/* GPT-2's byte map, written out again here so the test does not share the library's table. */
static void gpt2_char(int b, char *out, size_t *len)
{
    int cp;
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) cp = b;
    else {
        int k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; *len = 1; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); *len = 2; }
}

/* ---------------------------------------------------------------- unicode table */

static void test_unicode(void)
{
    struct { uint32_t cp; int cls; } k[] = {
        {'a', TQ_UNI_LETTER}, {'Z', TQ_UNI_LETTER}, {'5', TQ_UNI_NUMBER}, {' ', TQ_UNI_SPACE}, {'\t', TQ_UNI_SPACE},
        {'\n', TQ_UNI_SPACE}, {0x0B, TQ_UNI_SPACE}, {0x0D, TQ_UNI_SPACE}, {0x1C, 0}, {'!', 0}, {'_', 0}, {0x85, TQ_UNI_SPACE},
        {0xA0, TQ_UNI_SPACE}, {0xE9, TQ_UNI_LETTER} /* é */, {0xB2, TQ_UNI_NUMBER} /* ² (No) */,
        {0x2460, TQ_UNI_NUMBER} /* ① */, {0x0661, TQ_UNI_NUMBER} /* Arabic-Indic 1 */, {0x4E2D, TQ_UNI_LETTER} /* 中 */,
        {0x3000, TQ_UNI_SPACE}, {0x2028, TQ_UNI_SPACE}, {0x200B, 0} /* zero width space: Cf, not White_Space */,
        {0x1F44D, 0} /* emoji */, {0x0301, 0} /* combining acute: Mn */, {0xD800, 0}, {0x10FFFF, 0}, {0x110000, 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        CHECK(tq_unicode_class(k[i].cp) == k[i].cls, "class of U+%04X: %d, want %d", k[i].cp, tq_unicode_class(k[i].cp),
              k[i].cls);
    /* the table is sorted, ranges disjoint and non-empty; White_Space has exactly 25 code points */
    int ok = 1;
    long nspace = 0;
    for (int i = 0; i < tq_unicode_n_ranges; i++) {
        const tq_unicode_range *r = &tq_unicode_ranges[i];
        if (r->first > r->last || r->flags == 0 || (i && r->first <= tq_unicode_ranges[i - 1].last)) ok = 0;
        if (r->flags & TQ_UNI_SPACE) nspace += r->last - r->first + 1;
    }
    CHECK(ok && tq_unicode_n_ranges > 500, "unicode table ordered (%d ranges)", tq_unicode_n_ranges);
    CHECK(nspace == 25, "White_Space code points: %ld", nspace);
}

/* ---------------------------------------------------------------- synthetic BPE */

/* A byte-level vocabulary: ids 0..255 the byte characters (id = byte), then the merge results in order. */
typedef struct {
    tq_gguf_str tok[300], mrg[40];
    char store[4096];
    size_t used;
    int ntok, nmrg;
} mini_bpe;

static const char *mb_add(mini_bpe *m, const char *s, size_t n)
{
    char *p = m->store + m->used;
    memcpy(p, s, n);
    m->used += n;
    return p;
}

static void mb_init(mini_bpe *m)
{
    memset(m, 0, sizeof *m);
    for (int b = 0; b < 256; b++) {
        char c[2];
        size_t n;
        gpt2_char(b, c, &n);
        m->tok[m->ntok].s = mb_add(m, c, n);
        m->tok[m->ntok++].len = n;
    }
}

/* merge "a b" of two plain-ASCII strings (no spaces; 'G' stands for the space byte's character) */
static void mb_merge(mini_bpe *m, const char *a, const char *b)
{
    char buf[64], cat[64];
    size_t n = 0, c = 0;
    for (const char *p = a; *p; p++) {
        char ch[2];
        size_t k;
        gpt2_char(*p == 'G' ? ' ' : *p, ch, &k);
        memcpy(buf + n, ch, k); n += k;
        memcpy(cat + c, ch, k); c += k;
    }
    buf[n++] = ' ';
    for (const char *p = b; *p; p++) {
        char ch[2];
        size_t k;
        gpt2_char(*p == 'G' ? ' ' : *p, ch, &k);
        memcpy(buf + n, ch, k); n += k;
        memcpy(cat + c, ch, k); c += k;
    }
    m->mrg[m->nmrg].s = mb_add(m, buf, n);
    m->mrg[m->nmrg++].len = n;
    m->tok[m->ntok].s = mb_add(m, cat, c);
    m->tok[m->ntok++].len = c;
}

static tq_tokenizer *mb_build(mini_bpe *m, const char *pre)
{
    tq_tokenizer_spec s = {0};
    s.model = TQ_TOK_BPE;
    s.pre = pre;
    s.n_tokens = m->ntok;
    s.tokens = m->tok;
    s.n_merges = m->nmrg;
    s.merges = m->mrg;
    s.bos_id = s.eos_id = s.unk_id = -1;
    tq_tokenizer *t = NULL;
    int rc = tq_tokenizer_create(&s, &t);
    CHECK(rc == TQ_OK, "mini bpe: %s", tq_error_msg());
    return t;
}

static void expect(const tq_tokenizer *t, const char *text, const int32_t *want, int nw, const char *what)
{
    int32_t *ids = NULL;
    int n = tokenize(t, text, strlen(text), 0, &ids);
    CHECK(n >= 0 && same_ids(ids, n, want, nw, what), "%s", what);
    char *back = NULL;
    size_t len = 0;
    CHECK(tq_detokenize(t, ids, n, 0, &back, &len) == TQ_OK && len == strlen(text) && !memcmp(back, text, len),
          "%s: round trip gave '%s'", what, back ? back : "");
    free(back);
    free(ids);
}

static void test_bpe_synthetic(void)
{
    mini_bpe m;
    mb_init(&m);
    /* ranks: 0 "h e"=256, 1 "l l"=257, 2 "he ll"=258, 3 "hell o"=259, 4 "b c"=260, 5 "a b"=261, 6 "G w"=262,
     * 7 "1 2"=263, 8 "a a"=264 */
    mb_merge(&m, "h", "e");
    mb_merge(&m, "l", "l");
    mb_merge(&m, "he", "ll");
    mb_merge(&m, "hell", "o");
    mb_merge(&m, "b", "c");
    mb_merge(&m, "a", "b");
    mb_merge(&m, "G", "w");
    mb_merge(&m, "1", "2");
    mb_merge(&m, "a", "a");
    tq_tokenizer *t = mb_build(&m, "gpt2");
    if (!t) return;
    { const int32_t w[] = {259}; expect(t, "hello", w, 1, "hello: four merges in rank order"); }
    /* "abc": "b c" (rank 4) beats "a b" (rank 5), so a + bc */
    { const int32_t w[] = {'a', 260}; expect(t, "abc", w, 2, "abc: lower rank first"); }
    /* "aaa": equal ranks go leftmost first: aa + a */
    { const int32_t w[] = {264, 'a'}; expect(t, "aaa", w, 2, "aaa: leftmost of equal ranks"); }
    /* GPT-2 regex: " w" keeps its space ("G w" merge), digits " 123" are one word: " 12"? no merge "G 1": G,12,3 */
    { const int32_t w[] = {'x', 262, ' ', 263, '3'}; expect(t, "x w 123", w, 5, "gpt2 words"); }
    /* contractions split off; three spaces before a word: two alone, one joins the word */
    { const int32_t w[] = {'d', 'o', 'n', '\'', 't', ' ', ' ', 262}; expect(t, "don't   w", w, 8, "contraction, spaces"); }
    tq_tokenizer_free(t);

    /* smollm: every digit alone, so "12" never merges and " 1" loses its space to a word of its own */
    t = mb_build(&m, "smollm");
    if (!t) return;
    { const int32_t w[] = {'x', ' ', '1', '2', '3'}; expect(t, "x 123", w, 5, "smollm digits"); }
    tq_tokenizer_free(t);

    /* llama3: digits in threes, a letter run takes one leading non-letter, case-insensitive contractions */
    t = mb_build(&m, "llama3");
    if (!t) return;
    { const int32_t w[] = {263, '3', '4', '5', '6'}; expect(t, "123456", w, 5, "llama3 digits in threes"); }
    { const int32_t w[] = {'I', '\'', 'L', 'L', 262}; expect(t, "I'LL w", w, 5, "llama3 'LL"); }
    tq_tokenizer_free(t);
    t = mb_build(&m, "qwen2");
    if (!t) return;
    { const int32_t w[] = {'1', '2', '3'}; expect(t, "123", w, 3, "qwen2 single digits"); }
    tq_tokenizer_free(t);

    /* invalid UTF-8 round-trips: stray continuation, overlong, surrogate, truncated, beyond U+10FFFF */
    t = mb_build(&m, "gpt2");
    const char bad[] = "a\x80 \xC0\xAF \xED\xA0\x80 \xE2\x82 \xF4\x90\x80\x80 z\xFF";
    int32_t *ids = NULL;
    int n = tokenize(t, bad, sizeof bad - 1, 0, &ids);
    char *back = NULL;
    size_t len = 0;
    CHECK(n > 0 && tq_detokenize(t, ids, n, 0, &back, &len) == TQ_OK && len == sizeof bad - 1 && !memcmp(back, bad, len),
          "invalid utf-8 round trip");
    /* each invalid byte groups like punctuation: "a" then "\x80" are two words (no merge exists anyway) */
    CHECK(n == (int)(sizeof bad - 1), "invalid utf-8: one id per byte here (%d)", n);
    free(back);
    free(ids);
    tq_tokenizer_free(t);

    /* refusals */
    tq_tokenizer_spec s = {0};
    s.model = TQ_TOK_BPE;
    s.pre = "default";
    s.n_tokens = m.ntok;
    s.tokens = m.tok;
    s.bos_id = s.eos_id = s.unk_id = -1;
    tq_tokenizer *bad_t = NULL;
    CHECK(tq_tokenizer_create(&s, &bad_t) == TQ_ERR_USAGE && strstr(tq_error_msg(), "'default'") && !bad_t, "pre default");
    s.pre = "gpt2";
    s.bos_id = m.ntok;
    CHECK(tq_tokenizer_create(&s, &bad_t) == TQ_ERR_USAGE && strstr(tq_error_msg(), "out of range"), "bos range");
    s.bos_id = -1;
    s.add_bos = 1;
    CHECK(tq_tokenizer_create(&s, &bad_t) == TQ_ERR_USAGE && strstr(tq_error_msg(), "bos"), "add_bos without bos");
    s.add_bos = 0;
    tq_gguf_str nospace = {"abc", 3};
    s.merges = &nospace;
    s.n_merges = 1;
    CHECK(tq_tokenizer_create(&s, &bad_t) == TQ_ERR_USAGE && strstr(tq_error_msg(), "merge 0"), "merge without space");
    s.model = 7;
    CHECK(tq_tokenizer_create(&s, &bad_t) == TQ_ERR_USAGE, "unknown model");
}

/* ---------------------------------------------------------------- synthetic SPM */

static void test_spm_synthetic(void)
{
    /* ids: 0 <unk> 1 <s> 2 </s>, 3..258 <0x00>..<0xFF>, then pieces with scores */
    static char store[4096];
    size_t used = 0;
    tq_gguf_str tok[300];
    int32_t type[300];
    float score[300];
    int n = 0;
#define ADD(str, ty, sc) do { size_t l_ = strlen(str); memcpy(store + used, str, l_); tok[n].s = store + used; \
        tok[n].len = l_; used += l_; type[n] = ty; score[n] = sc; n++; } while (0)
    ADD("<unk>", TQ_TOKEN_UNKNOWN, 0);
    ADD("<s>", TQ_TOKEN_CONTROL, 0);
    ADD("</s>", TQ_TOKEN_CONTROL, 0);
    for (int b = 0; b < 256; b++) {
        char h[8];
        snprintf(h, sizeof h, "<0x%02X>", b);
        ADD(h, TQ_TOKEN_BYTE, 0);
    }
    ADD("\xE2\x96\x81", TQ_TOKEN_NORMAL, -1);          /* 259 ▁ */
    ADD("a", TQ_TOKEN_NORMAL, -2);                     /* 260 */
    ADD("b", TQ_TOKEN_NORMAL, -2);                     /* 261 */
    ADD("c", TQ_TOKEN_NORMAL, -2);                     /* 262 */
    ADD("ab", TQ_TOKEN_NORMAL, -5);                    /* 263 */
    ADD("bc", TQ_TOKEN_NORMAL, -3);                    /* 264: scores higher than ab, so "abc" -> a bc */
    ADD("\xE2\x96\x81" "a", TQ_TOKEN_NORMAL, -4);      /* 265 ▁a */
    ADD("\xE2\x96\x81" "abc", TQ_TOKEN_NORMAL, -1);    /* 266 ▁abc: reached as ▁a + bc */
    ADD("\n", TQ_TOKEN_USER_DEFINED, 0);               /* 267 */
    ADD("<ctl>", TQ_TOKEN_CONTROL, 0);                 /* 268 */
#undef ADD
    tq_tokenizer_spec s = {0};
    s.model = TQ_TOK_SPM;
    s.n_tokens = n;
    s.tokens = tok;
    s.types = type;
    s.scores = score;
    s.bos_id = 1;
    s.eos_id = 2;
    s.unk_id = 0;
    s.add_bos = 1;
    s.add_space_prefix = 0;
    tq_tokenizer *t = NULL;
    CHECK(tq_tokenizer_create(&s, &t) == TQ_OK, "mini spm: %s", tq_error_msg());
    if (!t) return;
    /* "abc": bc (-3) before ab (-5): a + bc */
    { const int32_t w[] = {260, 264}; expect(t, "abc", w, 2, "spm abc: highest score first"); }
    /* " abc": ▁a (-4) and bc (-3): bc first, then ▁ + a -> ▁a, and ▁a + bc = ▁abc exists (-1): one token */
    { const int32_t w[] = {266}; expect(t, " abc", w, 1, "spm ▁abc"); }
    /* byte fallback: 'x' and 'é' (C3 A9) have no piece */
    { const int32_t w[] = {3 + 'x', 3 + 0xC3, 3 + 0xA9, 260}; expect(t, "x\xC3\xA9" "a", w, 4, "spm byte fallback"); }
    /* user-defined "\n" is cut out before merging; a control token in the text is plain text unless asked */
    { const int32_t w[] = {260, 267, 261}; expect(t, "a\nb", w, 3, "spm user-defined newline"); }
    int32_t *ids = NULL;
    int k = tokenize(t, "a<ctl>b", 7, TQ_TOKENIZE_PARSE_SPECIAL | TQ_TOKENIZE_ADD_SPECIAL, &ids);
    { const int32_t w[] = {1, 260, 268, 261}; CHECK(k == 4 && same_ids(ids, k, w, 4, "parse special"), "spm parse special"); }
    char *back = NULL;
    size_t len = 0;
    CHECK(tq_detokenize(t, ids, k, 0, &back, &len) == TQ_OK && len == 2 && !memcmp(back, "ab", 2), "control hidden");
    free(back);
    CHECK(tq_detokenize(t, ids, k, TQ_DETOKENIZE_SPECIAL, &back, &len) == TQ_OK && !strcmp(back, "<s>a<ctl>b"),
          "control shown: '%s'", back);
    free(back);
    free(ids);
    k = tokenize(t, "a<ctl>b", 7, 0, &ids);
    CHECK(k > 3, "control not parsed: %d ids", k);
    for (int i = 0; i < k; i++) CHECK(ids[i] != 268, "control id %d appears unparsed", ids[i]);
    free(ids);
    int32_t badid = n;
    CHECK(tq_detokenize(t, &badid, 1, 0, &back, &len) == TQ_ERR_USAGE && !back, "detokenize id out of range");
    tq_tokenizer_free(t);

    /* Llama 2 style: a space prefix before the text, dropped again when decoding */
    s.add_space_prefix = 1;
    CHECK(tq_tokenizer_create(&s, &t) == TQ_OK, "mini spm prefix");
    if (!t) return;
    { const int32_t w[] = {266}; expect(t, "abc", w, 1, "spm space prefix"); }
    tq_tokenizer_free(t);

    /* no byte token and no unknown: refused at tokenize time, with the byte named */
    s.unk_id = -1;
    s.n_tokens = 3;
    s.bos_id = 1;
    s.add_space_prefix = 0;
    CHECK(tq_tokenizer_create(&s, &t) == TQ_OK, "mini spm without bytes");
    if (!t) return;
    CHECK(tokenize(t, "q", 1, 0, &ids) < 0 && strstr(tq_error_msg(), "<0x71>"), "missing byte token: %s", tq_error_msg());
    tq_tokenizer_free(t);
}

/* ---------------------------------------------------------------- naive references on real vocabularies */

/* Sorted (text, id) index over a spec's tokens for the references' lookups. */
typedef struct { const char *s; size_t n; int32_t id; } ent;
static int ent_cmp(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}
static int32_t ent_find(const ent *e, size_t n, const char *s, size_t len)
{
    ent key = {s, len, 0};
    const ent *r = bsearch(&key, e, n, sizeof *e, ent_cmp);
    return r ? r->id : -1;
}

/* SentencePiece reference: rescan every adjacent pair each step, merge the best (score, then leftmost). */
static int spm_reference(const tq_tokenizer_spec *sp, const ent *idx, const char *text, size_t len, int32_t *out)
{
    char *buf = malloc(3 * len + 4);
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(buf + m, "\xE2\x96\x81", 3); m += 3; }
        else buf[m++] = text[i];
    }
    size_t *st = malloc((m + 1) * sizeof *st), ns = 0;
    static const int ll[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    for (size_t i = 0; i < m; i += (size_t)ll[(unsigned char)buf[i] >> 4]) st[ns++] = i;
    st[ns] = m;
    for (;;) {
        long best = -1;
        float bs = 0;
        for (size_t i = 0; i + 1 < ns; i++) {
            int32_t id = ent_find(idx, (size_t)sp->n_tokens, buf + st[i], st[i + 2 > ns ? ns : i + 2] - st[i]);
            if (id >= 0 && (best < 0 || sp->scores[id] > bs)) { best = (long)i; bs = sp->scores[id]; }
        }
        if (best < 0) break;
        memmove(st + best + 1, st + best + 2, (ns - (size_t)best - 1) * sizeof *st);
        ns--;
    }
    int n = 0;
    for (size_t i = 0; i < ns; i++) {
        int32_t id = ent_find(idx, (size_t)sp->n_tokens, buf + st[i], st[i + 1] - st[i]);
        if (id >= 0) out[n++] = id;
        else
            for (size_t j = st[i]; j < st[i + 1]; j++) {
                char h[8];
                snprintf(h, sizeof h, "<0x%02X>", (unsigned char)buf[j]);
                out[n++] = ent_find(idx, (size_t)sp->n_tokens, h, 6);
            }
    }
    free(st);
    free(buf);
    return n;
}

/* Byte-level BPE reference on one pre-token: rescan all pairs for the lowest rank, merge every occurrence of that
 * pair left to right (Hugging Face's formulation, as scripts/dump_kv.py does it). */
static int bpe_reference(const tq_tokenizer_spec *sp, const ent *idx, const ent *midx, const char *word, size_t len,
                         int32_t *out)
{
    char parts[64][64];
    size_t pl[64], np = 0;
    for (size_t i = 0; i < len; i++) { gpt2_char((unsigned char)word[i], parts[np], &pl[np]); np++; }
    for (;;) {
        long best = -1, br = 0;
        for (size_t i = 0; i + 1 < np; i++) {
            char key[130];
            memcpy(key, parts[i], pl[i]);
            key[pl[i]] = ' ';
            memcpy(key + pl[i] + 1, parts[i + 1], pl[i + 1]);
            int32_t r = ent_find(midx, (size_t)sp->n_merges, key, pl[i] + 1 + pl[i + 1]);
            if (r >= 0 && (best < 0 || r < br)) { best = (long)i; br = r; }
        }
        if (best < 0) break;
        char a[64], b[64];
        size_t la = pl[best], lb = pl[best + 1];
        memcpy(a, parts[best], la);
        memcpy(b, parts[best + 1], lb);
        size_t w = 0;
        for (size_t i = 0; i < np; i++) {
            if (i + 1 < np && pl[i] == la && pl[i + 1] == lb && !memcmp(parts[i], a, la) && !memcmp(parts[i + 1], b, lb)) {
                memcpy(parts[w], a, la);
                memcpy(parts[w] + la, b, lb);
                pl[w++] = la + lb;
                i++;
            } else {
                if (w != i) memcpy(parts[w], parts[i], pl[i]);
                pl[w++] = pl[i];
            }
        }
        np = w;
    }
    for (size_t i = 0; i < np; i++) out[i] = ent_find(idx, (size_t)sp->n_tokens, parts[i], pl[i]);
    return (int)np;
}

/* ---------------------------------------------------------------- real models */


/* A model variant as the golden files name it: the model's own tokenizer, or its vocabulary under another
 * pre-tokenizer / with a space prefix (the variants llama.cpp was run on, through rewritten GGUF metadata). */
typedef struct { const char *name, *model, *pre; int space_prefix; } variant;
static const variant variants[] = {
    {"smollm2", "smollm2", NULL, -1}, {"gemma3", "gemma3", NULL, -1},
    {"smollm2-gpt2", "smollm2", "gpt-2", -1}, {"smollm2-llama3", "smollm2", "llama3", -1},
    {"smollm2-qwen2", "smollm2", "qwen2", -1}, {"gemma3-prefix", "gemma3", NULL, 1},
};
static const char *texts[][2] = {
    {"pride", "datasets/text/pride-and-prejudice.txt"}, {"scandal", "datasets/text/scandal-in-bohemia.txt"},
    {"tale", "datasets/text/tale-of-two-cities.txt"}, {"hard", "tests/golden/tokens/tokenizer_hard.txt"},
};

/* ids of a golden file: '#' lines are comments, the rest whitespace-separated integers */
static int32_t *read_golden(const char *path, int *n)
{
    size_t len;
    char *s = read_file(path, &len);
    if (!s) return NULL;
    int32_t *v = malloc((len / 2 + 1) * sizeof *v);
    int k = 0;
    char *p = s;
    while (*p) {
        if (*p == '#') { while (*p && *p != '\n') p++; continue; }
        char *e;
        long x = strtol(p, &e, 10);
        if (e == p) { p++; continue; }
        v[k++] = (int32_t)x;
        p = e;
    }
    free(s);
    *n = k;
    return v;
}

static void test_variant(const variant *v, tq_gguf *g, const char *path)
{
    tq_tokenizer_spec sp;
    int rc = tq_tokenizer_spec_from_gguf(g, &sp);
    CHECK(rc == TQ_OK, "%s spec: %s", v->name, tq_error_msg());
    if (rc) return;
    if (v->pre) sp.pre = v->pre;
    if (v->space_prefix >= 0) sp.add_space_prefix = v->space_prefix;
    tq_tokenizer *t = NULL;
    rc = tq_tokenizer_create(&sp, &t);
    CHECK(rc == TQ_OK, "%s: %s", v->name, tq_error_msg());
    if (rc) { tq_tokenizer_spec_free(&sp); return; }
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        for (int special = 0; special < 2; special++) {
            char gp[256];
            snprintf(gp, sizeof gp, "tests/golden/tokens/tokens_%s_%s%s.txt", v->name, texts[k][0], special ? "_special" : "");
            int nw = 0;
            int32_t *want = read_golden(gp, &nw);
            if (!want) {
                CHECK(special, "golden file '%s' missing", gp); /* every variant has the plain ones */
                continue;
            }
            size_t len;
            char *text = read_file(texts[k][1], &len);
            CHECK(text != NULL, "text '%s'", texts[k][1]);
            if (!text) { free(want); continue; }
            int flags = TQ_TOKENIZE_ADD_SPECIAL | (special ? TQ_TOKENIZE_PARSE_SPECIAL : 0);
            int32_t *ids = NULL;
            int n = tokenize(t, text, len, flags, &ids);
            CHECK(n >= 0 && same_ids(ids, n, want, nw, gp), "%s: ids equal llama.cpp's (%d tokens)", gp, nw);
            /* round trip: exact, BOS/EOS dropped as control tokens (shown when parsed from the text). With a space
             * prefix, SentencePiece (and llama.cpp) also prefixes the text after every user-defined token — Gemma's
             * "\n" — and that space stays: checked only on the text without newlines. */
            if (v->space_prefix == 1 && memchr(text, '\n', len)) {
                free(ids);
                free(text);
                free(want);
                continue;
            }
            char *back = NULL;
            size_t bl = 0;
            int drop = tq_tokenizer_bos(t) >= 0 && n > 0 && ids[0] == tq_tokenizer_bos(t);
            rc = tq_detokenize(t, ids + (special ? drop : 0), n - (special ? drop : 0),
                               special ? TQ_DETOKENIZE_SPECIAL : 0, &back, &bl);
            CHECK(rc == TQ_OK && bl == len && !memcmp(back, text, len), "%s: detokenize(tokenize(x)) == x", gp);
            free(back);
            free(ids);
            free(text);
            free(want);
        }
    }
    tq_tokenizer_free(t);
    tq_tokenizer_spec_free(&sp);
    (void)path;
}

static void test_references(tq_gguf *g, const char *name)
{
    tq_tokenizer_spec sp;
    if (tq_tokenizer_spec_from_gguf(g, &sp)) { CHECK(0, "%s spec: %s", name, tq_error_msg()); return; }
    tq_tokenizer *t = NULL;
    if (tq_tokenizer_create(&sp, &t)) { CHECK(0, "%s: %s", name, tq_error_msg()); tq_tokenizer_spec_free(&sp); return; }
    ent *idx = malloc((size_t)sp.n_tokens * sizeof *idx);
    for (int32_t i = 0; i < sp.n_tokens; i++) idx[i] = (ent){sp.tokens[i].s, sp.tokens[i].len, i};
    /* the references look up the first id of a text, as the library does */
    qsort(idx, (size_t)sp.n_tokens, sizeof *idx, ent_cmp);
    int checked = 0, agree = 0;
    if (sp.model == TQ_TOK_SPM) {
        /* every line of the texts without user-defined pieces (no "\n", no double spaces), merged as a whole */
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            size_t len;
            char *text = read_file(texts[k][1], &len);
            if (!text) continue;
            for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                size_t ll = strlen(line);
                if (strstr(line, "  ") || strchr(line, '\t') || ll > 2000 || strchr(line, '<')) continue;
                int32_t *ids = NULL, *ref = malloc((3 * ll + 4) * sizeof *ref);
                int n = tokenize(t, line, ll, 0, &ids);
                int nr = spm_reference(&sp, idx, line, ll, ref);
                checked++;
                agree += n == nr && same_ids(ids, n, ref, nr, "spm reference");
                free(ids);
                free(ref);
            }
            free(text);
        }
    } else {
        ent *midx = malloc((size_t)sp.n_merges * sizeof *midx);
        for (int32_t i = 0; i < sp.n_merges; i++) midx[i] = (ent){sp.merges[i].s, sp.merges[i].len, i};
        qsort(midx, (size_t)sp.n_merges, sizeof *midx, ent_cmp); /* merges are unique: the rank is the id */
        /* single pre-tokens: letter runs with a leading space, cut from the texts, and long made-up words */
        const char *words[] = {" unbelievably", " Darkness", " incredulity", " superlative", "Heaven",
                               " antidisestablishmentarianism", " qwertyuiopasdfghjkl", " zzzzzzzzzzzzzzzz",
                               " aaaaaaaaaaaaaaaaaaaaaaa", " Mississippi", " ééééé", " naïveté", " 中文字符测试"};
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
            int32_t *ids = NULL, ref[64];
            size_t wl = strlen(words[k]);
            int n = tokenize(t, words[k], wl, 0, &ids);
            int nr = bpe_reference(&sp, idx, midx, words[k], wl, ref);
            checked++;
            agree += n == nr && same_ids(ids, n, ref, nr, words[k]);
            free(ids);
        }
        free(midx);
    }
    CHECK(checked > 10 && agree == checked, "%s: %d of %d pieces agree with the naive reference", name, agree, checked);
    free(idx);
    tq_tokenizer_free(t);
    tq_tokenizer_spec_free(&sp);
}

static void test_models(void)
{
    const char *names[2] = {"smollm2", "gemma3"};
    for (int m = 0; m < 2; m++) {
        char *p = tq_test_model_path(names[m]);
        if (!p) {
            char why[128];
            snprintf(why, sizeof why, "%s not fetched (bash scripts/get_models.sh %s)", names[m], names[m]);
            SKIP(why);
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s", p);
        tq_gguf *g = NULL;
        if (tq_gguf_open(path, &g)) { CHECK(0, "%s", tq_error_msg()); continue; }
        tq_tokenizer *t = NULL;
        int rc = tq_tokenizer_from_gguf(g, &t);
        CHECK(rc == TQ_OK, "%s: %s", names[m], tq_error_msg());
        if (t) {
            /* the conventions MODELS.md states */
            if (m == 0)
                CHECK(tq_tokenizer_model(t) == TQ_TOK_BPE && tq_tokenizer_n_vocab(t) == 49152 && tq_tokenizer_bos(t) == 1 &&
                      tq_tokenizer_eos(t) == 2, "smollm2 conventions");
            else
                CHECK(tq_tokenizer_model(t) == TQ_TOK_SPM && tq_tokenizer_n_vocab(t) == 262144 && tq_tokenizer_bos(t) == 2 &&
                      tq_tokenizer_eos(t) == 1, "gemma3 conventions");
            int32_t *ids = NULL;
            int n = tokenize(t, "Hi", 2, TQ_TOKENIZE_ADD_SPECIAL, &ids);
            CHECK(n >= 1 && (m == 0 ? ids[0] != 1 : ids[0] == 2), "%s: bos added only for gemma3", names[m]);
            free(ids);
            char d[256];
            tq_tokenizer_describe(t, d, sizeof d);
            CHECK(strstr(d, m == 0 ? "'smollm'" : "SentencePiece") != NULL, "describe: %s", d);
            tq_tokenizer_free(t);
        }
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++)
            if (!strcmp(variants[v].model, names[m])) test_variant(&variants[v], g, path);
        test_references(g, names[m]);
        tq_gguf_close(g);
    }
}

/* ---------------------------------------------------------------- driver mode for tests/py */

static int driver(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[1], "--ids")) {
        fprintf(stderr, "usage: test_tokenizer --ids MODEL.gguf [--flags N] [--pre NAME] FILE...\n");
        return 2;
    }
    tq_gguf *g = NULL;
    tq_tokenizer_spec sp;
    tq_tokenizer *t = NULL;
    if (tq_gguf_open(argv[2], &g) || tq_tokenizer_spec_from_gguf(g, &sp)) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
    int flags = 0, a = 3;
    for (; a + 1 < argc && argv[a][0] == '-' && argv[a][1] == '-'; a += 2) {
        if (!strcmp(argv[a], "--flags")) flags = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--pre")) sp.pre = argv[a + 1];
    }
    if (tq_tokenizer_create(&sp, &t)) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
    for (; a < argc; a++) {
        size_t len;
        char *text = read_file(argv[a], &len);
        if (!text) { fprintf(stderr, "cannot read '%s'\n", argv[a]); return 1; }
        int32_t *ids = NULL;
        int n = tokenize(t, text, len, flags, &ids);
        if (n < 0) { fprintf(stderr, "%s\n", tq_error_msg()); return 1; }
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
        free(text);
    }
    tq_tokenizer_free(t);
    tq_tokenizer_spec_free(&sp);
    tq_gguf_close(g);
    return 0;
}

/* ---------------------------------------------------------------- UTF-8 for text cells */

/* An independent strict check (RFC 3629 by its byte ranges, Table 3-7 of the Unicode standard) of what
 * tq_utf8_sanitize must return: well-formed UTF-8. */
static int utf8_well_formed(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (k > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return 0;
        for (size_t j = 2; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static void test_utf8_sanitize(void)
{
    /* Expected bytes from CPython's bytes.decode("utf-8", "replace").encode() (the Unicode standard's "maximal
     * subpart" substitution, which tq_utf8_sanitize implements): truncated sequences (a byte-level token holding the
     * first bytes of an emoji or a CJK character), stray continuation bytes, overlongs, surrogates, code points past
     * U+10FFFF, bytes that lead nothing, an embedded NUL. */
    static const struct { const char *in; size_t n; const char *want; size_t n_want; } c[] = {
        {"", 0, "", 0},
        {"abc", 3, "abc", 3},
        {"\xf0\x9f", 2, "\xef\xbf\xbd", 3},
        {"\xf0\x9f\x99", 3, "\xef\xbf\xbd", 3},
        {"\xf0\x9f\x99\x82", 4, "\xf0\x9f\x99\x82", 4},
        {"caf\xc3", 4, "caf\xef\xbf\xbd", 6},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9", 5},
        {"\x80", 1, "\xef\xbf\xbd", 3},
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6},
        {"\xe0\x80\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9},
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12},
        {"\xf5" "abc", 4, "\xef\xbf\xbd" "abc", 6},
        {"\xe2\x82\xe2\x82\xac", 5, "\xef\xbf\xbd\xe2\x82\xac", 6},
        {"a\xf0\x9f\x99z", 5, "a\xef\xbf\xbdz", 5},
        {"\xe6\x97\xa5\xe6\x9c", 5, "\xe6\x97\xa5\xef\xbf\xbd", 6},
        {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6},
        {"\xf0\x80\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9},
        {"\xe0\xa0", 2, "\xef\xbf\xbd", 3},
        {"\xc3(", 2, "\xef\xbf\xbd(", 4},
        {"x\x00\xc3", 3, "x\x00\xef\xbf\xbd", 5},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *o;
        size_t n;
        CHECK(tq_utf8_sanitize(c[i].in, c[i].n, &o, &n) == TQ_OK, "case %zu", i);
        CHECK(n == c[i].n_want && !memcmp(o, c[i].want, n) && o[n] == 0, "case %zu: got %zu bytes, want %zu", i, n,
              c[i].n_want);
        free(o);
    }
    /* Random bytes (biased to UTF-8's lead and continuation ranges so that valid, truncated and ill-formed sequences
     * all occur): the output is always well-formed by the independent check, sanitizing twice changes nothing, and
     * input that was well-formed comes back unchanged. */
    tq_rng r;
    tq_rng_seed(&r, 15, 0);
    int fixed = 0, kept = 0;
    for (int t = 0; t < 2000; t++) {
        unsigned char b[24];
        size_t n = tq_rng_bounded(&r, sizeof b + 1);
        for (size_t i = 0; i < n; i++) {
            uint32_t u = tq_rng_bounded(&r, 4);
            b[i] = (unsigned char)(u == 0 ? tq_rng_bounded(&r, 0x80) : u == 1 ? 0x80 + tq_rng_bounded(&r, 0x40)
                                                                             : 0xC0 + tq_rng_bounded(&r, 0x40));
        }
        char *o, *o2;
        size_t m, m2;
        CHECK(tq_utf8_sanitize((const char *)b, n, &o, &m) == TQ_OK, "random %d", t);
        CHECK(utf8_well_formed((const unsigned char *)o, m), "random %d: output not well-formed", t);
        CHECK(tq_utf8_sanitize(o, m, &o2, &m2) == TQ_OK && m2 == m && !memcmp(o, o2, m), "random %d: not idempotent",
              t);
        if (utf8_well_formed(b, n)) {
            CHECK(m == n && !memcmp(o, b, n), "random %d: well-formed input changed", t);
            kept++;
        } else fixed++;
        free(o);
        free(o2);
    }
    /* both branches exercised (with these weights roughly 1 in 8 strings is well-formed) */
    CHECK(fixed > 100 && kept > 20, "random strings: %d ill-formed, %d well-formed", fixed, kept);
}

int main(int argc, char **argv)
{
    if (argc > 1) return driver(argc, argv);
    test_unicode();
    test_utf8_sanitize();
    test_bpe_synthetic();
    test_spm_synthetic();
    test_models();
    TQ_TEST_END();
}
