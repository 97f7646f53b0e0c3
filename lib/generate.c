/* generate.c: decoding with a quantized KV cache against the reference cache (tq generate), and the passkey
 * prompts of --needle. The sampler, the KL and the prompt builder are here so every front end (CLI, Python, MPI)
 * gets the same bytes. */
#include "generate.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/tq_cuda.h"
#include "rng.h"
#include "tq.h"

/* log-softmax in double, rounded to float as lib/kvquant.c rounds its reference, so identical logits give exactly
 * 0 KL; returns the argmax (lowest id on ties). */
static int log_softmax(const float *x, int V, float *out)
{
    int am = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[am]) am = i;
    double mx = x[am], s = 0;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < V; i++) out[i] = (float)((double)x[i] - lse);
    return am;
}

static double kl_rows(const float *ref, const float *q, int V)
{
    double kl = 0;
    for (int v = 0; v < V; v++) kl += exp((double)ref[v]) * ((double)ref[v] - (double)q[v]);
    return kl;
}

typedef struct {
    double p;
    int32_t id;
} prob_id;

static int by_prob(const void *a, const void *b)
{
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* One draw from softmax(logits / T) restricted to its top-p nucleus: candidates sorted by probability (ids break
 * ties, so the order is total and the draw deterministic), the smallest prefix whose mass reaches top_p kept, and
 * u * mass walked along it. */
static int32_t sample_token(const float *logits, int V, const tq_gen_opts *g, double u, prob_id *pi)
{
    double mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < V; i++) {
        pi[i].p = exp(((double)logits[i] - mx) / g->temperature);
        pi[i].id = i;
        s += pi[i].p;
    }
    qsort(pi, (size_t)V, sizeof *pi, by_prob);
    double mass = 0;
    int k = 0;
    while (k < V && (k == 0 || mass < g->top_p * s)) mass += pi[k++].p;
    double target = u * mass, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += pi[i].p;
        if (target < acc) return pi[i].id;
    }
    return pi[k - 1].id;
}

/* One decoding pass. forced: feed these tokens instead of the sampler's (teacher forcing), n_forced steps.
 * ref_logp / n_ref: KL against these rows into kl[t] for t < n_ref. */
typedef struct {
    const int32_t *forced;
    int n_forced;
    const float *ref_logp;
    int n_ref;
    double *kl;
    int keep_logp;
} pass_io;

static int is_stop(const tq_gen_opts *g, int32_t t)
{
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop[i] == t) return 1;
    return 0;
}

/* Where a pass runs: the CPU forward over c, or (g->cuda) the GPU loop over gc, one token a step. */
typedef struct {
    tq_model *m;
    tq_kv_cache *c;
    tq_cuda_model *g;
    tq_cuda_cache *gc;
} fwd;

/* tokens[0..n) forward; logits: NULL or, for n == 1, the next-token row */
static int fwd_run(fwd *f, const int32_t *tok, int n, float *logits)
{
    if (!f->g) return tq_model_forward(f->m, f->c, tok, n, logits);
    for (int i = 0; i < n; i++) {
        int st = tq_cuda_model_step(f->g, f->gc, tok[i], i == n - 1 ? logits : NULL);
        if (st < 0) return st;
    }
    return TQ_OK;
}

static int gen_pass(tq_model *m, const tq_kvq_opts *o, const int32_t *prompt, int n_prompt, const tq_gen_opts *g,
                    const pass_io *io, tq_gen_output *out, double *bits_total)
{
    memset(out, 0, sizeof *out);
    if (n_prompt < 1) return tq_error_set(TQ_ERR_USAGE, "generate: the prompt has no token");
    if (g->n_tokens < 1) return tq_error_set(TQ_ERR_USAGE, "generate: want at least 1 token, got %d", g->n_tokens);
    if (g->sample && !(g->temperature > 0 && g->top_p > 0 && g->top_p <= 1))
        return tq_error_set(TQ_ERR_USAGE, "generate: sampling needs temperature > 0 and top-p in (0, 1]");
    int V = tq_model_get_config(m)->n_vocab, N = io->forced ? io->n_forced : g->n_tokens, st = TQ_OK;
    tq_kvq *q = NULL;
    tq_kv_cache *c = NULL;
    fwd f = {m, NULL, g->cuda, NULL};
    double gbits = 16.0;
    float *logits = tq_malloc((size_t)V * sizeof *logits), *lp = tq_malloc((size_t)V * sizeof *lp);
    prob_id *pi = g->sample && !io->forced ? tq_malloc((size_t)V * sizeof *pi) : NULL;
    out->tokens = tq_malloc((size_t)N * sizeof *out->tokens);
    if (io->keep_logp) out->logp = tq_malloc((size_t)N * V * sizeof *out->logp);
    if (!logits || !lp || !out->tokens || (io->keep_logp && !out->logp) || (g->sample && !io->forced && !pi)) {
        st = TQ_ERR_NOMEM;
        goto done;
    }
    if (o && !g->cuda) {
        tq_kvq_opts oo = *o;
        oo.prompt = n_prompt;
        if ((st = tq_kvq_create(&oo, m, &q)) < 0) goto done;
    }
    if (g->cuda) st = tq_kvq_cuda_cache(m, g->cuda, o, n_prompt + N, &f.gc, &gbits);
    else st = tq_kv_cache_create(m, n_prompt + N, &c);
    if (st < 0) goto done;
    f.c = c;
    if (q) tq_kvq_attach(q, c);
    if (n_prompt > 1 && (st = fwd_run(&f, prompt, n_prompt - 1, NULL)) < 0) goto done;
    tq_rng rng;
    tq_rng_derive(&rng, g->seed, -1, -1, TQ_PURPOSE_GENERATE);
    int32_t cur = prompt[n_prompt - 1];
    for (int t = 0; t < N; t++) {
        if ((st = fwd_run(&f, &cur, 1, logits)) < 0) goto done;
        int am = log_softmax(logits, V, lp);
        if (io->kl && t < io->n_ref) io->kl[t] = kl_rows(io->ref_logp + (size_t)t * V, lp, V);
        if (out->logp) memcpy(out->logp + (size_t)t * V, lp, (size_t)V * sizeof *lp);
        double u = g->sample ? tq_rng_double(&rng) : 0; /* drawn every step, so coupled runs stay in step */
        int32_t next = io->forced ? io->forced[t] : g->sample ? sample_token(logits, V, g, u, pi) : am;
        out->tokens[out->n++] = next;
        if (!io->forced && is_stop(g, next)) break;
        cur = next;
    }
    if (bits_total) *bits_total = g->cuda ? gbits : q ? tq_kvq_bits_total(q, tq_kv_cache_len(c)) : 16.0;
done:
    if (st < 0) tq_gen_output_free(out);
    tq_kv_cache_free(c);
    tq_cuda_cache_free(f.gc);
    tq_kvq_free(q);
    free(logits);
    free(lp);
    free(pi);
    return st;
}

int tq_generate(tq_model *m, const tq_kvq_opts *o, const int32_t *prompt, int n_prompt, const tq_gen_opts *g,
                int keep_logp, tq_gen_output *out)
{
    pass_io io = {.keep_logp = keep_logp};
    return gen_pass(m, o, prompt, n_prompt, g, &io, out, NULL);
}

void tq_gen_output_free(tq_gen_output *out)
{
    free(out->tokens);
    free(out->logp);
    memset(out, 0, sizeof *out);
}

int tq_gen_compare(tq_model *m, const tq_kvq_opts *o, const int32_t *prompt, int n_prompt, const tq_gen_opts *g,
                   const tq_gen_output *ref, tq_gen_result *r)
{
    memset(r, 0, sizeof *r);
    if (!ref->logp || ref->n < 1) return tq_error_set(TQ_ERR_USAGE, "generate: the reference has no log-probabilities");
    int st;
    r->n_ref = ref->n;
    r->pos_kl_tf = tq_calloc((size_t)ref->n, sizeof *r->pos_kl_tf);
    r->pos_kl_free = tq_calloc((size_t)ref->n, sizeof *r->pos_kl_free);
    if (!r->pos_kl_tf || !r->pos_kl_free) {
        tq_gen_result_free(r);
        return TQ_ERR_NOMEM;
    }
    tq_gen_output free_run, forced;
    pass_io io = {.ref_logp = ref->logp, .n_ref = ref->n, .kl = r->pos_kl_free};
    if ((st = gen_pass(m, o, prompt, n_prompt, g, &io, &free_run, &r->bits_total)) < 0) {
        tq_gen_result_free(r);
        return st;
    }
    io = (pass_io){.forced = ref->tokens, .n_forced = ref->n, .ref_logp = ref->logp, .n_ref = ref->n,
                   .kl = r->pos_kl_tf};
    if ((st = gen_pass(m, o, prompt, n_prompt, g, &io, &forced, NULL)) < 0) {
        tq_gen_output_free(&free_run);
        tq_gen_result_free(r);
        return st;
    }
    tq_gen_output_free(&forced);
    r->tokens = free_run.tokens;
    r->n = free_run.n;
    int lo = r->n < r->n_ref ? r->n : r->n_ref, hi = r->n > r->n_ref ? r->n : r->n_ref, eq = 0;
    r->first_diff = lo;
    for (int t = 0; t < lo; t++) {
        if (r->tokens[t] == ref->tokens[t]) eq++;
        else if (r->first_diff == lo) r->first_diff = t;
    }
    r->diverged = !(r->first_diff == lo && r->n == r->n_ref);
    r->equal_frac = (double)eq / hi;
    for (int t = 0; t < r->n_ref; t++) r->kl_tf += r->pos_kl_tf[t] / r->n_ref;
    for (int t = 0; t < lo; t++) r->kl_free += r->pos_kl_free[t] / lo;
    return TQ_OK;
}

void tq_gen_result_free(tq_gen_result *r)
{
    free(r->tokens);
    free(r->pos_kl_tf);
    free(r->pos_kl_free);
    memset(r, 0, sizeof *r);
}

/* ---------- prompts ---------- */

int tq_chat_style(const tq_gguf *g)
{
    tq_gguf_str s;
    if (tq_gguf_get_str(g, "tokenizer.chat_template", &s) != TQ_OK) return TQ_CHAT_NONE; /* 1: absent */
    const char *p = s.s;
    for (uint64_t i = 0; i + 13 <= s.len; i++) {
        if (!memcmp(p + i, "<|im_start|>", 12)) return TQ_CHAT_CHATML;
        if (i + 15 <= s.len && !memcmp(p + i, "<start_of_turn>", 15)) return TQ_CHAT_GEMMA;
    }
    return TQ_CHAT_NONE;
}

int tq_chat_tokens(const tq_tokenizer *tok, int style, const char *user, const char *answer_prefix, int32_t **ids,
                   int *n)
{
    static const char *const open[] = {"", "<|im_start|>user\n", "<start_of_turn>user\n"};
    static const char *const mid[] = {"\n", "<|im_end|>\n<|im_start|>assistant\n",
                                      "<end_of_turn>\n<start_of_turn>model\n"};
    if (style < TQ_CHAT_NONE || style > TQ_CHAT_GEMMA) return tq_error_set(TQ_ERR_USAGE, "unknown chat style %d", style);
    size_t len = strlen(open[style]) + strlen(user) + strlen(mid[style]) + strlen(answer_prefix) + 1;
    char *text = tq_malloc(len);
    if (!text) return TQ_ERR_NOMEM;
    snprintf(text, len, "%s%s%s%s", open[style], user, mid[style], answer_prefix);
    /* plain text carries no control tokens to parse: a prompt that spells one stays text */
    int flags = TQ_TOKENIZE_ADD_SPECIAL | (style ? TQ_TOKENIZE_PARSE_SPECIAL : 0);
    int st = tq_tokenize(tok, text, strlen(text), flags, ids, n);
    free(text);
    return st;
}

void tq_chat_stops(const tq_tokenizer *tok, int style, int32_t stops[2], int *n)
{
    *n = 0;
    if (tq_tokenizer_eos(tok) >= 0) stops[(*n)++] = tq_tokenizer_eos(tok);
    const char *eot = style == TQ_CHAT_CHATML ? "<|im_end|>" : style == TQ_CHAT_GEMMA ? "<end_of_turn>" : NULL;
    int32_t *ids = NULL;
    int k = 0;
    if (eot && tq_tokenize(tok, eot, strlen(eot), TQ_TOKENIZE_PARSE_SPECIAL, &ids, &k) >= 0 && k == 1 &&
        (*n == 0 || ids[0] != stops[0]))
        stops[(*n)++] = ids[0];
    free(ids);
}

static const char needle_intro[] = "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize "
                                   "it. I will quiz you about the pass key.\n";
static const char *const filler[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                                     "There and back again."};
static const char needle_question[] = "\nWhat is the pass key? Answer with the 5-digit number only.";

static char *needle_text(int n_fill, int at, int key)
{
    size_t cap = sizeof needle_intro + sizeof needle_question + 128 + (size_t)n_fill * 24;
    char *s = tq_malloc(cap);
    if (!s) return NULL;
    size_t k = (size_t)snprintf(s, cap, "%s", needle_intro);
    for (int i = 0; i <= n_fill; i++) {
        if (i == at) k += (size_t)snprintf(s + k, cap - k, "%sThe pass key is %d. Remember it. %d is the pass key.",
                                           i ? " " : "", key, key);
        if (i < n_fill) k += (size_t)snprintf(s + k, cap - k, " %s", filler[i % 5]);
    }
    snprintf(s + k, cap - k, "%s", needle_question);
    return s;
}

static int needle_try(const tq_tokenizer *tok, int style, int n_fill, double depth_pct, int key, int32_t **ids,
                      int *n)
{
    char *text = needle_text(n_fill, (int)lround(depth_pct / 100.0 * n_fill), key);
    if (!text) return TQ_ERR_NOMEM;
    int st = tq_chat_tokens(tok, style, text, "The pass key is", ids, n);
    free(text);
    return st;
}

int tq_needle_tokens(const tq_tokenizer *tok, int style, int context, double depth_pct, int key, int32_t **ids,
                     int *n)
{
    *ids = NULL;
    *n = 0;
    if (key < 10000 || key > 99999) return tq_error_set(TQ_ERR_USAGE, "needle: key %d is not 5 digits", key);
    if (!(depth_pct >= 0 && depth_pct <= 100))
        return tq_error_set(TQ_ERR_USAGE, "needle: depth %g%% is outside 0..100", depth_pct);
    int n0, n5, st;
    int32_t *t;
    /* tokens are nearly additive in sentences: measure none and five, estimate, then step down until it fits */
    if ((st = needle_try(tok, style, 0, depth_pct, key, &t, &n0)) < 0) return st;
    free(t);
    if (n0 > context)
        return tq_error_set(TQ_ERR_USAGE, "needle: the prompt without filler takes %d tokens, more than the context "
                            "of %d", n0, context);
    if ((st = needle_try(tok, style, 5, depth_pct, key, &t, &n5)) < 0) return st;
    free(t);
    double per = (n5 - n0) / 5.0;
    int nf = per > 0 ? (int)((context - n0) / per) + 2 : 0;
    for (; nf >= 0; nf--) {
        if ((st = needle_try(tok, style, nf, depth_pct, key, ids, n)) < 0) return st;
        if (*n <= context) return TQ_OK;
        free(*ids);
        *ids = NULL;
    }
    return tq_error_set(TQ_ERR, "needle: no filler count fits %d tokens", context); /* unreachable: n0 fits */
}

int tq_needle_parse(const char *text)
{
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char)*p) || (p > text && isdigit((unsigned char)p[-1]))) continue;
        int k = 0;
        while (isdigit((unsigned char)p[k])) k++;
        if (k == 5) return atoi(p) >= 10000 ? atoi(p) : -1;
        p += k - 1;
    }
    return -1;
}

int tq_needle_key(uint64_t seed, int trial)
{
    tq_rng r;
    tq_rng_derive(&r, seed, -1, trial, TQ_PURPOSE_GENERATE);
    return 10000 + (int)tq_rng_bounded(&r, 90000);
}
