/* test_schedule.c: the strict JSON parser (valid documents, malformed ones with the exact line:column of the fault)
 * and schedules (per layer and per head, shape and range errors, matching against a dump). */
#include "tq_test.h"

#include "quant.h"
#include "schedule.h"
#include "tq.h"

/* Parse must fail with a message containing `want` (which carries the expected "line:col"). */
static void bad_json(const char *text, const char *want)
{
    tq_json v;
    int rc = tq_json_parse(&v, text, strlen(text), "t.json");
    CHECK(rc == TQ_ERR && strstr(tq_error_msg(), want), "json %s: rc %d, message '%s', want '%s'", text, rc,
          tq_error_msg(), want);
    if (rc == TQ_OK) tq_json_free(&v);
}

static void test_json(void)
{
    const char *doc = "{\"a\": [1, -2.5e2, 0.125, true, false, null],\n \"s\": \"x\\n\\u00e9\\ud83d\\ude00\\\"\","
                      " \"o\": {}, \"e\": []}";
    tq_json v;
    int rc = tq_json_parse(&v, doc, strlen(doc), "t.json");
    CHECK(rc == TQ_OK, "valid json: %s", tq_error_msg());
    if (rc == TQ_OK) {
        const tq_json *a = tq_json_get(&v, "a"), *s = tq_json_get(&v, "s");
        CHECK(a && a->type == TQ_JSON_ARRAY && a->n == 6, "array of 6");
        /* numbers are exact binary fractions here, so equality is exact */
        CHECK(a && a->items[0].num == 1 && a->items[1].num == -250 && a->items[2].num == 0.125, "numbers");
        CHECK(a && a->items[3].type == TQ_JSON_TRUE && a->items[4].type == TQ_JSON_FALSE &&
              a->items[5].type == TQ_JSON_NULL, "literals");
        /* x, newline, U+00E9 (2 bytes), U+1F600 from a surrogate pair (4 bytes), quote */
        CHECK(s && !strcmp(s->str, "x\n\xc3\xa9\xf0\x9f\x98\x80\""), "string escapes to UTF-8");
        CHECK(a && a->line == 1 && a->col == 7 && s && s->line == 2 && s->col == 7, "positions of values");
        CHECK(tq_json_get(&v, "o")->n == 0 && tq_json_get(&v, "e")->n == 0, "empty containers");
        tq_json_free(&v);
    }
    bad_json("{\"a\": [1, 2,]}", "t.json':1:13: trailing comma in array");
    bad_json("{\"a\": 1,\n \"b\" 2}", "t.json':2:6: expected ':'");
    bad_json("[1 2]", ":1:4: expected ',' or ']'");
    bad_json("{\"a\": 1, \"a\": 2}", "duplicate key \"a\"");
    bad_json("[01]", ":1:3: expected ',' or ']'");      /* leading zero: the number ends at 0 */
    bad_json("[1.]", ":1:4: invalid number");
    bad_json("[NaN]", ":1:2: unexpected character 'N'");
    bad_json("{\"a\": tru}", ":1:7: invalid literal (want true)");
    bad_json("\"abc", ":1:5: unterminated string");
    bad_json("[1] x", ":1:5: unexpected text after");
    bad_json("\"\\ud800\"", "unpaired surrogate");
    bad_json("", ":1:1: unexpected end of input");
    bad_json("{\n  \"k\": [\n    1,\n    2\n  }", ":5:3: expected ',' or ']'");
    char deep[200];
    memset(deep, '[', 40);
    deep[40] = 0;
    bad_json(deep, "nesting deeper than the limit"); /* depth 33 > 32 trips before the missing brackets */
}

static tq_schedule *sched(const char *text)
{
    tq_schedule *s = NULL;
    tq_schedule_parse(&s, text, strlen(text), "s.json");
    return s;
}

static void bad_sched(const char *text, const char *want)
{
    tq_schedule *s = NULL;
    int rc = tq_schedule_parse(&s, text, strlen(text), "s.json");
    CHECK(rc != TQ_OK && !s && strstr(tq_error_msg(), want), "schedule %s: rc %d, '%s', want '%s'", text, rc,
          tq_error_msg(), want);
    tq_schedule_free(s);
}

static void test_schedules(void)
{
    tq_schedule *s = sched("{\"tq_schedule\": 1, \"method\": \"turbo-prod\", \"budget\": 3.0, \"achieved_bits\": 2.94,"
                           " \"policy\": \"optimal\", \"metric\": \"attn_kl\", \"units\": \"layer\","
                           " \"keys\": [4, 3, 2], \"values\": [3, 3, 3]}");
    CHECK(s != NULL, "per-layer schedule: %s", tq_error_msg());
    if (s) {
        CHECK(s->n_layers == 3 && s->n_heads == 0 && !strcmp(s->method, "turbo-prod") && s->budget == 3.0 &&
              s->achieved_bits == 2.94 && !strcmp(s->policy, "optimal"), "fields");
        CHECK(tq_schedule_bits(s, 0, 5, TQ_TENSOR_KEYS) == 4 && tq_schedule_bits(s, 2, 0, TQ_TENSOR_KEYS) == 2 &&
              tq_schedule_bits(s, 1, 0, TQ_TENSOR_VALUES) == 3, "bits lookup");
        CHECK(tq_schedule_check(s, "s.json", 3, 8, "turbo-prod", 1, 8) == TQ_OK, "matches dump");
        CHECK(tq_schedule_check(s, "s.json", 4, 8, "turbo-prod", 1, 8) == TQ_ERR_USAGE &&
              strstr(tq_error_msg(), "has 3 layers but the dump has 4"), "layer mismatch: %s", tq_error_msg());
        CHECK(tq_schedule_check(s, "s.json", 3, 8, "turbo-mse", 1, 8) == TQ_ERR_USAGE &&
              strstr(tq_error_msg(), "made for method 'turbo-prod'"), "method mismatch: %s", tq_error_msg());
        CHECK(tq_schedule_check(s, "s.json", 3, 8, "turbo-prod", 3, 8) == TQ_ERR_USAGE &&
              strstr(tq_error_msg(), "keys bits 2 at layer 2 out of range 3..8"), "range: %s", tq_error_msg());
        tq_schedule_free(s);
    }
    s = sched("{\"tq_schedule\": 1, \"units\": \"head\", \"keys\": [[3, 2], [4, 4]]}");
    CHECK(s && s->n_heads == 2 && !s->values && tq_schedule_bits(s, 1, 0, TQ_TENSOR_KEYS) == 4 &&
          tq_schedule_bits(s, 0, 1, TQ_TENSOR_KEYS) == 2 && tq_schedule_bits(s, 0, 0, TQ_TENSOR_VALUES) == -1 &&
          isnan(s->budget), "per-head schedule: %s", tq_error_msg());
    if (s) {
        CHECK(tq_schedule_check(s, "s.json", 2, 3, NULL, 1, 8) == TQ_ERR_USAGE &&
              strstr(tq_error_msg(), "2 heads per layer but the dump has 3 kv heads"), "heads: %s", tq_error_msg());
        tq_schedule_free(s);
    }
    bad_sched("{\"units\": \"layer\", \"keys\": [3]}", "missing \"tq_schedule\"");
    bad_sched("{\"tq_schedule\": 2, \"keys\": [3]}", "s.json':1:17: unsupported \"tq_schedule\" version");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3, 9]}", "s.json':1:32: bits 9 out of range 1..8");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3, 0]}", "bits 0 out of range 1..8");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3, 2.5]}", ":1:32: bits must be an integer");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3, \"4\"]}", "bits must be an integer");
    bad_sched("{\"tq_schedule\": 1, \"keys\": []}", "\"keys\" must be a non-empty array");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3, 3], \"values\": [3]}", "\"values\" has 1 layers but \"keys\" has 2");
    bad_sched("{\"tq_schedule\": 1, \"units\": \"head\", \"keys\": [[3, 3], [3]]}", "layer 1 of \"keys\" has 1 heads, expected 2");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [[3, 3]]}", "units \"layer\" wants one integer per layer");
    bad_sched("{\"tq_schedule\": 1, \"units\": \"token\", \"keys\": [3]}", "\"units\" must be \"layer\" or \"head\"");
    bad_sched("[1]", "a schedule is a JSON object");
    bad_sched("{\"tq_schedule\": 1, \"keys\": [3,]}", "s.json':1:31: trailing comma");
    tq_schedule *l = NULL;
    CHECK(tq_schedule_load(&l, "/nonexistent/s.json") == TQ_ERR && strstr(tq_error_msg(), "cannot open schedule"),
          "missing file: %s", tq_error_msg());
}

int main(void)
{
    test_json();
    test_schedules();
    TQ_TEST_END();
}
