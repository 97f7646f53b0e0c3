/* fuzz_tokenizer.c: libFuzzer harness for lib/tokenizer: arbitrary bytes through a small byte-level BPE (every
 * pre-tokenizer) and a SentencePiece vocabulary with byte fallback and user-defined/control tokens, with and without
 * special-token parsing. Any byte string must tokenize, and must come back byte for byte (BPE always; SentencePiece
 * when it holds no literal U+2581, the one character it cannot give back). */
#include "fuzz_common.h"

#include <string.h>

#include "tokenizer.h"
#include "tq.h"

static tq_tokenizer *bpe[4], *spm;

static void add(tq_gguf_str *v, int *n, char *store, size_t *used, const char *s, size_t len)
{
    memcpy(store + *used, s, len);
    v[*n].s = store + *used;
    v[*n].len = len;
    *used += len;
    (*n)++;
}

static void build(void)
{
    static char store[16384];
    size_t used = 0;
    static tq_gguf_str tok[400], mrg[16];
    int nt = 0, nm = 0;
    for (int b = 0; b < 256; b++) { /* GPT-2 byte characters */
        int self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE, k = 0;
        for (int c = 0; c < b; c++) k += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
        int cp = self ? b : 256 + k;
        char u[2] = {(char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F))};
        if (cp < 0x80) { u[0] = (char)cp; add(tok, &nt, store, &used, u, 1); }
        else add(tok, &nt, store, &used, u, 2);
    }
    const char *merges[] = {"t h", "th e", "\xC4\xA0 t", "\xC4\xA0t he", "a n", "an d", "1 2", "' s", "e e", "ee ee"};
    for (size_t i = 0; i < sizeof merges / sizeof merges[0]; i++) {
        const char *m = merges[i];
        add(mrg, &nm, store, &used, m, strlen(m));
        char cat[32];
        size_t sp = strchr(m, ' ') - m;
        memcpy(cat, m, sp);
        strcpy(cat + sp, m + sp + 1);
        add(tok, &nt, store, &used, cat, strlen(cat));
    }
    add(tok, &nt, store, &used, "<|x|>", 5);
    static int32_t types[400];
    for (int i = 0; i < nt; i++) types[i] = TQ_TOKEN_NORMAL;
    types[nt - 1] = TQ_TOKEN_CONTROL;
    const char *pres[4] = {"gpt2", "smollm", "llama3", "qwen2"};
    for (int p = 0; p < 4; p++) {
        tq_tokenizer_spec s = {0};
        s.model = TQ_TOK_BPE;
        s.pre = pres[p];
        s.n_tokens = nt;
        s.tokens = tok;
        s.types = types;
        s.n_merges = nm;
        s.merges = mrg;
        s.bos_id = s.eos_id = s.unk_id = -1;
        if (tq_tokenizer_create(&s, &bpe[p])) abort();
    }
    static tq_gguf_str st[300];
    static int32_t sty[300];
    static float ssc[300];
    int ns = 0;
    add(st, &ns, store, &used, "<unk>", 5); sty[0] = TQ_TOKEN_UNKNOWN;
    add(st, &ns, store, &used, "<s>", 3); sty[1] = TQ_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        char h[8];
        snprintf(h, sizeof h, "<0x%02X>", b);
        sty[ns] = TQ_TOKEN_BYTE;
        add(st, &ns, store, &used, h, 6);
    }
    const char *pieces[] = {"\xE2\x96\x81", "\xE2\x96\x81t", "th", "\xE2\x96\x81th", "e", "t", "h", "\xE2\x96\x81the",
                            "\n", "  ", ">\xE2\x96\x81<", ">", "<"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        sty[ns] = (!strcmp(pieces[i], "\n") || !strcmp(pieces[i], "  ")) ? TQ_TOKEN_USER_DEFINED : TQ_TOKEN_NORMAL;
        ssc[ns] = -(float)i;
        add(st, &ns, store, &used, pieces[i], strlen(pieces[i]));
    }
    tq_tokenizer_spec s = {0};
    s.model = TQ_TOK_SPM;
    s.n_tokens = ns;
    s.tokens = st;
    s.types = sty;
    s.scores = ssc;
    s.bos_id = 1;
    s.eos_id = -1;
    s.unk_id = 0;
    s.add_bos = 1;
    if (tq_tokenizer_create(&s, &spm)) abort();
}

static void round_trip(const tq_tokenizer *t, const uint8_t *data, size_t size, int flags, int exact)
{
    int32_t *ids = NULL;
    int n = 0;
    if (tq_tokenize(t, (const char *)data, size, flags, &ids, &n)) abort();
    char *back = NULL;
    size_t len = 0;
    int drop = (flags & TQ_TOKENIZE_ADD_SPECIAL) && n > 0 && ids[0] == tq_tokenizer_bos(t);
    if (tq_detokenize(t, n ? ids + drop : ids, n - drop, (flags & TQ_TOKENIZE_PARSE_SPECIAL) ? TQ_DETOKENIZE_SPECIAL : 0, &back,
                      &len))
        abort();
    if (exact && (len != size || memcmp(back, data, size))) abort();
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!spm) build();
    if (size > 4096) return 0;
    int has_sp = 0;
    for (size_t i = 0; i + 3 <= size; i++) has_sp |= !memcmp(data + i, "\xE2\x96\x81", 3);
    for (int p = 0; p < 4; p++) {
        round_trip(bpe[p], data, size, 0, 1);
        round_trip(bpe[p], data, size, TQ_TOKENIZE_PARSE_SPECIAL, 1);
    }
    round_trip(spm, data, size, TQ_TOKENIZE_ADD_SPECIAL, !has_sp);
    round_trip(spm, data, size, TQ_TOKENIZE_ADD_SPECIAL | TQ_TOKENIZE_PARSE_SPECIAL, !has_sp);
    return 0;
}
