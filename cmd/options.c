/* options.c: the table-driven option parser and --help writer of options.h. */
#include "options.h"

#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const tq_option *find(const tq_option *o, const char *name, size_t len)
{
    for (; o->kind != OPT_END; o++) {
        if (o->kind == OPT_GROUP) continue;
        if (o->name && strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
        if (o->alias && strlen(o->alias) == len && !strncmp(o->alias, name, len)) return o;
    }
    return NULL;
}

/* "f16|f32" -> index of v, or -1 */
static int choice_index(const char *choices, const char *v)
{
    size_t n = strlen(v);
    int i = 0;
    for (const char *c = choices; c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncmp(c, v, n)) return i;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* "f16|f32|bf16" -> "f16, f32 or bf16" for the error message */
static void choice_text(const char *choices, char *buf, size_t n)
{
    buf[0] = 0;
    size_t len = 0;
    for (const char *c = choices; c && len < n;) {
        const char *bar = strchr(c, '|');
        int w = bar ? (int)(bar - c) : (int)strlen(c);
        const char *sep = c == choices ? "" : bar ? ", " : " or ";
        int k = snprintf(buf + len, n - len, "%s%.*s", sep, w, c);
        if (k < 0) break;
        len += (size_t)k;
        c = bar ? bar + 1 : NULL;
    }
}

static void set_value(const tq_option *o, const char *as, const char *v)
{
    switch (o->kind) {
    case OPT_STRING: *(const char **)o->value = v; break;
    case OPT_INT: *(int *)o->value = (int)parse_long(as, v, o->lo, o->hi); break;
    case OPT_LONG: *(long *)o->value = parse_long(as, v, o->lo, o->hi); break;
    case OPT_U64: *(uint64_t *)o->value = parse_u64(as, v); break;
    case OPT_DOUBLE: *(double *)o->value = parse_double(as, v, o->dlo, o->dhi); break;
    case OPT_CHOICE: {
        int i = choice_index(o->choices, v);
        if (i < 0) {
            char list[256];
            choice_text(o->choices, list, sizeof list);
            die_usage("option '%s' is '%s', expected %s", as, v, list);
        }
        *(int *)o->value = i;
        break;
    }
    default: break;
    }
}

int opt_parse(const tq_cmd_spec *spec, int argc, char **argv, const char **pos)
{
    for (const tq_option *o = spec->opts; o->kind != OPT_END; o++)
        if (o->def && o->kind != OPT_GROUP && o->kind != OPT_FLAG) set_value(o, o->name, o->def);
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            opt_help(spec, stdout);
            if (fflush(stdout) != 0) die("cannot write the standard output");
            tq_exit(0);
        }
        if (a[0] != '-' || !a[1]) {
            pos[np++] = a;
            continue;
        }
        const char *eq = !strncmp(a, "--", 2) ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const tq_option *o = find(spec->opts, a, len);
        if (!o) die_usage("%s: unknown option '%.*s' (see 'tq %s --help')", spec->name, (int)len, a, spec->name);
        char as[64];
        snprintf(as, sizeof as, "%.*s", (int)len, a);
        if (o->seen) *o->seen = 1;
        if (o->kind == OPT_FLAG) {
            if (eq) die_usage("%s: option '%s' takes no value (see 'tq %s --help')", spec->name, as, spec->name);
            *(int *)o->value = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                die_usage("%s: option '%s' needs a value (see 'tq %s --help')", spec->name, as, spec->name);
            v = argv[++i];
        }
        set_value(o, as, v);
    }
    return np;
}

/* Help text with continuation lines aligned under the first. */
static void help_text(FILE *f, const char *h, int indent)
{
    for (const char *p = h; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(f, "%.*s\n", len, p);
        if (!nl) break;
        p = nl + 1;
        fprintf(f, "%*s", indent, "");
    }
}

void opt_help(const tq_cmd_spec *spec, FILE *f)
{
    const char *u = spec->usage;
    for (int first = 1; u && *u; first = 0) {
        const char *nl = strchr(u, '\n');
        int len = nl ? (int)(nl - u) : (int)strlen(u);
        fprintf(f, "%s%.*s\n", first ? "usage: tq " : "       tq ", len, u);
        u = nl ? nl + 1 : u + len;
    }
    if (spec->about) fprintf(f, "%s\n", spec->about);
    const int col = 24;
    for (const tq_option *o = spec->opts; o->kind != OPT_END; o++) {
        if (o->kind == OPT_GROUP) {
            fprintf(f, "%s\n", o->help);
            continue;
        }
        char left[96];
        int n = snprintf(left, sizeof left, "  %s%s%s%s%s", o->name, o->alias ? ", " : "", o->alias ? o->alias : "",
                         o->arg ? " " : "", o->arg ? o->arg : "");
        if (n >= col - 1) fprintf(f, "%s\n%*s", left, col, "");
        else fprintf(f, "%-*s", col, left);
        /* the default goes at the end of the help's last line */
        char def[128] = "";
        if (o->def && o->kind != OPT_FLAG) snprintf(def, sizeof def, " (default %s)", o->def);
        const char *h = o->help ? o->help : "";
        char *text = malloc(strlen(h) + sizeof def);
        if (!text) die("out of memory");
        sprintf(text, "%s%s", h, *h ? def : def + (def[0] == ' '));
        help_text(f, text, col);
        free(text);
    }
    fprintf(f, "  -h, --help%*sthis help\n", col - 12, "");
    if (spec->epilog) fprintf(f, "%s\n", spec->epilog);
}
