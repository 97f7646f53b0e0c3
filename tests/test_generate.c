/* test_generate.c: lib/generate's prompt side — needle answers parsed as the README says, keys uniform 5-digit and
 * fixed by the seed, needle prompts that fit the context and hold the key at the asked depth, chat templates
 * recognised and written with their control tokens — on the bundled models' tokenizers (no forward pass: fast under
 * the sanitizers; tests/cli/test_generate.sh runs the model). */
#include "generate.h"
#include "gguf.h"
#include "tokenizer.h"
#include "tq_test.h"

static void test_parse(void)
{
    CHECK(tq_needle_parse(" 12345.") == 12345, "plain answer");
    CHECK(tq_needle_parse("The pass key is 54321, remember") == 54321, "inside text");
    CHECK(tq_needle_parse(" 123456") == -1, "six digits are not a key");
    CHECK(tq_needle_parse("1234 and 98765") == 98765, "first run of exactly five");
    CHECK(tq_needle_parse("no digits") == -1, "none");
    CHECK(tq_needle_parse("") == -1, "empty");
}

static void test_keys(void)
{
    int lo = 99999, hi = 0, same = 1, diff = 0;
    for (int t = 0; t < 2000; t++) {
        int k = tq_needle_key(3, t);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
        same &= k == tq_needle_key(3, t);
        diff += k != tq_needle_key(4, t);
    }
    CHECK(same, "a seed fixes its keys");
    CHECK(lo >= 10000 && hi <= 99999, "keys 5 digits: %d..%d", lo, hi);
    /* 2000 uniform draws over 90000 values: min within ~45 * ln(100) = 207 of 10000 with probability 0.99 and the
     * same for max, so both ends are reached to within 1000 unless the range is wrong */
    CHECK(lo < 11000 && hi > 98999, "keys span the range: %d..%d", lo, hi);
    /* two seeds agree on a trial with probability 1/90000: at most a few of 2000 */
    CHECK(diff >= 1995, "seeds differ: %d of 2000", diff);
}

static void test_needle_prompts(const char *which, int want_style)
{
    const char *path = tq_test_model_path(which);
    if (!path) {
        SKIP("model not fetched (bash scripts/get_models.sh)");
        return;
    }
    tq_gguf *g;
    tq_tokenizer *tok;
    CHECK(tq_gguf_open(path, &g) == 0, "open %s", path);
    CHECK(tq_tokenizer_from_gguf(g, &tok) == 0, "tokenizer");
    int style = tq_chat_style(g);
    CHECK(style == want_style, "%s chat style %d, want %d", which, style, want_style);
    int32_t stops[2], ns;
    tq_chat_stops(tok, style, stops, &ns);
    CHECK(ns >= 1 && stops[0] == tq_tokenizer_eos(tok), "EOS stops");
    for (int c = 0; c < 2; c++) {
        int ctx = c ? 512 : 160;
        for (int d = 0; d <= 100; d += 50) {
            int32_t *ids, n;
            CHECK(tq_needle_tokens(tok, style, ctx, d, 48213, &ids, &n) == 0, "needle prompt");
            /* fills the context: one more filler sentence (<= 8 tokens) would not have fit */
            CHECK(n <= ctx && n > ctx - 10, "%s: %d tokens for context %d", which, n, ctx);
            char *text;
            size_t len;
            CHECK(tq_detokenize(tok, ids, n, TQ_DETOKENIZE_SPECIAL, &text, &len) == 0, "detokenize");
            const char *at = strstr(text, "48213"), *fill = strstr(text, "The grass is green.");
            const char *q = strstr(text, "What is the pass key?");
            CHECK(at && fill && q, "key, filler and question present");
            /* depth: 0% before every filler sentence, 100% after the last, 50% in between */
            if (at && fill && q) {
                double frac = (double)(at - fill) / (double)(q - fill);
                if (d == 0) CHECK(at < fill, "depth 0: key first");
                if (d == 100) {
                    int after = 0;
                    for (const char *s = at; s < q; s++) after += !strncmp(s, "back again.", 11) ||
                                                                  !strncmp(s, "is green.", 9);
                    CHECK(after == 0 && frac > 0.5, "depth 100: no filler after the key (%.2f)", frac);
                }
                if (d == 50) CHECK(frac > 0.35 && frac < 0.65, "depth 50: key in the middle (%.2f)", frac);
            }
            if (style == TQ_CHAT_CHATML) CHECK(strstr(text, "<|im_start|>assistant\nThe pass key is") != NULL, "chatml turn");
            free(text);
            free(ids);
        }
    }
    int32_t *ids = NULL, n;
    CHECK(tq_needle_tokens(tok, style, 30, 0, 48213, &ids, &n) == TQ_ERR_USAGE && !ids, "context too small refused");
    CHECK(tq_needle_tokens(tok, style, 200, 0, 123, &ids, &n) == TQ_ERR_USAGE, "short key refused");
    tq_tokenizer_free(tok);
    tq_gguf_close(g);
}

int main(void)
{
    test_parse();
    test_keys();
    test_needle_prompts("smollm2", TQ_CHAT_CHATML);
    test_needle_prompts("gemma3", TQ_CHAT_NONE);
    TQ_TEST_END();
}
