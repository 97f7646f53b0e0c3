/* generate.h: the closed loop in generation — greedy or seeded-sampling continuation of a prompt with the KV cache
 * quantized (lib/kvquant.h) against the reference cache's continuation (first divergence, equal tokens, next-token
 * KL teacher-forced on the reference continuation and free-running), and the passkey-retrieval ("needle") prompts
 * and answer parsing. Generation is real decoding: the prompt in one forward call, then one token per call. */
#ifndef TQ_GENERATE_H
#define TQ_GENERATE_H

#include <stdint.h>

#include "gguf.h"
#include "kvquant.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    int n_tokens;             /* tokens to generate, >= 1 */
    int sample;               /* 0: greedy (argmax, lowest id on ties); 1: sampling */
    double temperature;       /* sampling: > 0 */
    double top_p;             /* sampling: nucleus mass in (0, 1] */
    uint64_t seed;            /* sampling: one PCG stream (TQ_PURPOSE_GENERATE), one draw per step */
    const int32_t *stop;      /* generation ends after emitting one of these (it is kept), or NULL */
    int n_stop;
    tq_cuda_model *cuda;      /* NULL: the CPU forward pass; else the model loop on this GPU model (lib/kvquant.h
                                 tq_kvq_cuda_cache: an fp16 cache for the reference, packed codes for o) */
} tq_gen_opts;

/* A continuation: the generated tokens (a stop token included) and, when asked, each step's next-token
 * log-probabilities (n rows of n_vocab floats; row i is the distribution token i was drawn from). */
typedef struct {
    int32_t *tokens;
    int n;
    float *logp;
} tq_gen_output;

/* Generate from prompt[0..n_prompt) (n_prompt >= 1) with the cache quantized by o (NULL: the reference cache;
 * o->prompt is replaced by n_prompt). Prompt tokens [0, n_prompt - 1) go in one forward call, then one token per
 * call starting with the prompt's last, so the quantized cache sees what a deployed decoder writes. The sampler
 * draws one uniform per step from its own stream, so two runs with the same seed share their draws step for step
 * (coupled sampling: they part only where the distributions differ). keep_logp: fill out->logp. */
int tq_generate(tq_model *m, const tq_kvq_opts *o, const int32_t *prompt, int n_prompt, const tq_gen_opts *g,
                int keep_logp, tq_gen_output *out);
void tq_gen_output_free(tq_gen_output *out);

typedef struct {
    int32_t *tokens;          /* the quantized cache's free-running continuation */
    int n;
    int n_ref;                /* the reference continuation's length */
    int first_diff;           /* tokens equal before the first divergence */
    int diverged;             /* 0: the two continuations are identical (first_diff == n == n_ref) */
    double equal_frac;        /* positions t < max(n, n_ref) with equal tokens, over max(n, n_ref) */
    double kl_tf;             /* mean over the reference's steps of KL(p_ref || p_q), the quantized cache fed the
                                 reference continuation (teacher-forced: both condition on the same history) */
    double kl_free;           /* mean over t < min(n, n_ref) of KL(p_ref,t || p_q,t), each on its own history:
                                 equals kl_tf's terms up to first_diff, afterwards the drift of two texts */
    double *pos_kl_tf;        /* [n_ref] */
    double *pos_kl_free;      /* [min(n, n_ref)] */
    double bits_total;        /* stored bits per K/V value of the final free-running cache (16: reference) */
} tq_gen_result;

/* Both passes of one configuration against ref (from tq_generate with keep_logp on the reference cache, same
 * prompt and g): free-running, then teacher-forced on ref's tokens. */
int tq_gen_compare(tq_model *m, const tq_kvq_opts *o, const int32_t *prompt, int n_prompt, const tq_gen_opts *g,
                   const tq_gen_output *ref, tq_gen_result *r);
void tq_gen_result_free(tq_gen_result *r);

/* ---- prompts ---- */

/* Chat templates tq can write (recognised from tokenizer.chat_template): none (plain text), ChatML (SmolLM2,
 * Qwen2: <|im_start|>role\n...<|im_end|>), Gemma (<start_of_turn>user\n...<end_of_turn>). */
enum { TQ_CHAT_NONE = 0, TQ_CHAT_CHATML = 1, TQ_CHAT_GEMMA = 2 };
int tq_chat_style(const tq_gguf *g);
/* One user turn and the start of the assistant's answer (answer_prefix, may be ""), tokenized with the model's
 * special tokens (BOS where it adds one, control tokens parsed). TQ_CHAT_NONE: user text, a newline, the prefix. */
int tq_chat_tokens(const tq_tokenizer *tok, int style, const char *user, const char *answer_prefix, int32_t **ids,
                   int *n);
/* The tokens that end a turn: EOS, and the template's end-of-turn token where it has one. *n <= 2. */
void tq_chat_stops(const tq_tokenizer *tok, int style, int32_t stops[2], int *n);

/* Passkey retrieval: an instruction, filler sentences with "The pass key is KEY. Remember it. KEY is the pass key."
 * inserted after round(depth_pct / 100 * n) of the n filler sentences, the question, and the answer started as
 * "The pass key is"; n is the largest count whose prompt fits in `context` tokens. TQ_ERR_USAGE when even no
 * filler does not fit, key outside 10000..99999 or depth outside [0, 100]. */
int tq_needle_tokens(const tq_tokenizer *tok, int style, int context, double depth_pct, int key, int32_t **ids,
                     int *n);
/* The key a needle answer names: the first run of exactly five digits in text, else -1. */
int tq_needle_parse(const char *text);
/* The key of trial `trial` under `seed`: uniform in 10000..99999 from its own PCG stream. */
int tq_needle_key(uint64_t seed, int trial);

#endif
