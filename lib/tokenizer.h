/* tokenizer.h: the tokenizers GGUF models carry in their metadata — GPT-2 byte-level BPE (tokenizer.ggml.model
 * "gpt2": SmolLM2, Llama 3, Qwen2) and SentencePiece-style BPE with byte fallback ("llama": Gemma, Llama 2,
 * TinyLlama) — text -> token ids and back, with the model's BOS/EOS conventions. Ids agree with llama.cpp's. */
#ifndef TQ_TOKENIZER_H
#define TQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tq_tokenizer tq_tokenizer;

/* Tokenizer families (tokenizer.ggml.model). */
enum { TQ_TOK_BPE = 1 /* "gpt2" */, TQ_TOK_SPM = 2 /* "llama" */ };

/* Token types, numbered as tokenizer.ggml.token_type stores them. */
enum {
    TQ_TOKEN_UNDEFINED = 0, TQ_TOKEN_NORMAL = 1, TQ_TOKEN_UNKNOWN = 2, TQ_TOKEN_CONTROL = 3,
    TQ_TOKEN_USER_DEFINED = 4, TQ_TOKEN_UNUSED = 5, TQ_TOKEN_BYTE = 6
};

/* What a tokenizer is built from: plain arrays, as GGUF metadata holds them (tq_tokenizer_spec_from_gguf fills
 * one from a file; tests build their own). Strings need not be NUL-terminated. Nothing is kept: create copies. */
typedef struct {
    int model;                  /* TQ_TOK_BPE or TQ_TOK_SPM */
    const char *pre;            /* BPE pre-tokenizer (tokenizer.ggml.pre), NUL-terminated; unused for SPM */
    int32_t n_tokens;
    const tq_gguf_str *tokens;  /* [n_tokens] token texts (BPE: GPT-2 byte-mapped; SPM: spaces as U+2581) */
    const int32_t *types;       /* [n_tokens] TQ_TOKEN_*, or NULL (all normal) */
    const float *scores;        /* [n_tokens] SPM merge scores, or NULL (all 0) */
    int32_t n_merges;
    const tq_gguf_str *merges;  /* [n_merges] BPE merges "left right", rank = index */
    int32_t bos_id, eos_id, unk_id; /* -1 when the model has none */
    int add_bos, add_eos;       /* tokenizer.ggml.add_bos_token / add_eos_token */
    int add_space_prefix;       /* SPM: tokenizer.ggml.add_space_prefix */
    void *owned_;               /* memory owned by a spec from tq_tokenizer_spec_from_gguf */
} tq_tokenizer_spec;

/* Fill `spec` from the tokenizer.ggml.* keys of an open GGUF. Defaults where a key is absent are llama.cpp's:
 * SPM adds BOS and a space prefix, BPE adds neither (Llama 3's pre-tokenizers add BOS); EOS is never added by
 * default. The spec points into the mapping and into memory it owns: free with tq_tokenizer_spec_free. */
int tq_tokenizer_spec_from_gguf(const tq_gguf *g, tq_tokenizer_spec *spec);
void tq_tokenizer_spec_free(tq_tokenizer_spec *spec);

/* Build a tokenizer (all data copied). TQ_ERR_USAGE for an unknown model or pre-tokenizer, ids out of range, a
 * merge without its separating space. Supported pre-tokenizers (llama.cpp's names): "gpt2" / "gpt-2" (GPT-2's
 * regex), "smollm" / "starcoder" / "refact" / "codeshell" (each digit alone, then GPT-2's regex), "llama3" /
 * "llama-v3" / "llama-bpe" (Llama 3's regex, digits in runs of up to 3, whole-word vocabulary hits skip merging),
 * "qwen2" (Llama 3's regex with single digits). */
int tq_tokenizer_create(const tq_tokenizer_spec *spec, tq_tokenizer **out);
/* spec_from_gguf + create. The tokenizer does not refer to `g` afterwards. */
int tq_tokenizer_from_gguf(const tq_gguf *g, tq_tokenizer **out);
void tq_tokenizer_free(tq_tokenizer *tok);

/* Flags of tq_tokenize. */
enum {
    /* Add BOS (and EOS) where the model's metadata says to (add_bos_token / add_eos_token) — llama.cpp's
     * add_special. Gemma 3: BOS 2 prepended; SmolLM2: nothing. */
    TQ_TOKENIZE_ADD_SPECIAL = 1,
    /* Recognise control tokens written in the text ("<|im_start|>", "<start_of_turn>") as those tokens. Off, they
     * are tokenized as plain text. User-defined tokens (Gemma's "\n", runs of spaces and tabs, HTML tags) are
     * always recognised, as llama.cpp and Hugging Face do. */
    TQ_TOKENIZE_PARSE_SPECIAL = 2,
};

/* Tokenize len bytes of text. *ids (malloc'd, free with free(); NULL when *n == 0) and *n receive the ids.
 * Any bytes are accepted. Invalid UTF-8 is handled deterministically: text is decoded strictly (RFC 3629) and each
 * byte that does not begin a valid sequence is a character of its own — for BPE one of no class (grouped like
 * punctuation by the regex) that keeps its value, for SPM one spelled by its byte token — so every byte string
 * round-trips. (llama.cpp replaces such bytes by U+FFFD for BPE; its ids differ from tq's only there.) TQ_OK,
 * TQ_ERR_NOMEM, or TQ_ERR when a needed byte token is missing from the vocabulary. `flags`: TQ_TOKENIZE_*. */
int tq_tokenize(const tq_tokenizer *tok, const char *text, size_t len, int flags, int32_t **ids, int *n);

/* Flags of tq_detokenize. */
enum { TQ_DETOKENIZE_SPECIAL = 1 /* render control/unknown tokens' text (otherwise they produce nothing) */ };

/* ids -> bytes: normal tokens through the GPT-2 byte map inverse (BPE) or with U+2581 -> space (SPM), byte
 * tokens <0xNN> as their byte, user-defined tokens as their text, unused tokens as nothing. With add_space_prefix
 * the one space the tokenizer prefixed is dropped again. *text is malloc'd and NUL-terminated (*len excludes the
 * NUL). TQ_ERR_USAGE for an id out of range. */
int tq_detokenize(const tq_tokenizer *tok, const int32_t *ids, int n, int flags, char **text, size_t *len);

/* Make bytes valid UTF-8 for a text cell (CSV/JSON/Markdown): valid sequences (strict RFC 3629, as tq_tokenize
 * reads) are copied, and each maximal subpart of an ill-formed sequence — a lead byte with the continuation bytes
 * that could still complete it, or a single stray byte — becomes one U+FFFD, Unicode's "substitution of maximal
 * subparts" (what Python's bytes.decode("utf-8", "replace") and the WHATWG decoder do). A generated text cut inside
 * a character (a byte-level token that holds only part of one) thus ends in U+FFFD instead of a partial sequence.
 * *out malloc'd, NUL-terminated (*out_len excludes the NUL; NUL bytes of the input are kept). TQ_OK or
 * TQ_ERR_NOMEM. */
int tq_utf8_sanitize(const char *s, size_t len, char **out, size_t *out_len);

int32_t tq_tokenizer_n_vocab(const tq_tokenizer *tok);
int32_t tq_tokenizer_bos(const tq_tokenizer *tok); /* -1 when none */
int32_t tq_tokenizer_eos(const tq_tokenizer *tok);
int tq_tokenizer_model(const tq_tokenizer *tok);   /* TQ_TOK_* */
/* A token's stored text (not NUL-terminated) and type; NULL / -1 for an id out of range. */
const char *tq_tokenizer_token(const tq_tokenizer *tok, int32_t id, size_t *len);
int tq_tokenizer_token_type(const tq_tokenizer *tok, int32_t id);

/* One line describing the tokenizer ("gpt2 BPE, pre 'smollm', 49152 tokens, 48900 merges, bos 1 (not added),
 * eos 2"), for `tq info`-like output. Returns snprintf's count. */
int tq_tokenizer_describe(const tq_tokenizer *tok, char *buf, size_t cap);

/* For a user-facing `tokenize` command: one line per id, "<id>\t<piece>\n", the piece as tq_detokenize renders
 * that id alone (control tokens shown) with bytes outside printable ASCII and '\\' escaped as \n, \t, \\ or \xNN.
 * *out malloc'd, NUL-terminated. */
int tq_tokenizer_render(const tq_tokenizer *tok, const int32_t *ids, int n, char **out, size_t *len);

/* Unicode classes of a code point as the pre-tokenizer regexes see them (lib/unicode_tab.c, generated by
 * scripts/gen_unicode.py). */
enum { TQ_UNI_LETTER = 1, TQ_UNI_NUMBER = 2, TQ_UNI_SPACE = 4 };
int tq_unicode_class(uint32_t cp);
typedef struct {
    uint32_t first, last;
    uint32_t flags; /* TQ_UNI_* */
} tq_unicode_range;
extern const tq_unicode_range tq_unicode_ranges[];
extern const int tq_unicode_n_ranges;
extern const char tq_unicode_version[];

#endif
