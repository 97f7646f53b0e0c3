/* options.h: a command's options as data (git's parse-options as the model). Each command declares one table of
 * tq_option rows — name, value kind, where the value goes, its default and its help line — and opt_parse does the
 * rest from it: parsing, range checks, the default values, --help and the unknown-option / missing-value messages.
 * A command spells each option once. */
#ifndef TQ_OPTIONS_H
#define TQ_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    OPT_END,     /* ends the table */
    OPT_GROUP,   /* a heading line in --help (help = the heading); no option */
    OPT_FLAG,    /* no value: *(int *)value = 1 */
    OPT_STRING,  /* *(const char **)value = the argument */
    OPT_INT,     /* *(int *)value, an integer in [lo, hi] */
    OPT_LONG,    /* *(long *)value, an integer in [lo, hi] */
    OPT_U64,     /* *(uint64_t *)value, a non-negative integer (decimal or 0x hex) */
    OPT_DOUBLE,  /* *(double *)value, a finite number in [dlo, dhi] */
    OPT_CHOICE,  /* *(int *)value = index of the argument in `choices` ("f16|f32"); else a usage error */
} tq_opt_kind;

typedef struct {
    tq_opt_kind kind;
    const char *name;     /* "--methods" or "-o" */
    const char *alias;    /* a second spelling ("--output"), or NULL */
    void *value;          /* where the value goes (type by kind) */
    const char *arg;      /* the value's placeholder in --help ("LIST", "N"); NULL for flags */
    const char *def;      /* default as text, applied before parsing and shown in --help; NULL: the variable's
                             initial value stands and nothing is shown */
    const char *help;     /* help text; '\n' continues on the next line, aligned */
    long lo, hi;          /* OPT_INT / OPT_LONG range */
    double dlo, dhi;      /* OPT_DOUBLE range */
    const char *choices;  /* OPT_CHOICE: names separated by '|' */
    int *seen;            /* when not NULL: set to 1 when the option is given */
} tq_option;

/* Table rows, so declarations stay one line each. */
#define OPT_GROUP_(h) {.kind = OPT_GROUP, .help = (h)}
#define OPT_FLAG_(n, v, h) {.kind = OPT_FLAG, .name = (n), .value = (v), .help = (h)}
#define OPT_STR_(n, v, a, d, h) {.kind = OPT_STRING, .name = (n), .value = (v), .arg = (a), .def = (d), .help = (h)}
#define OPT_INT_(n, v, a, d, l, u, h) \
    {.kind = OPT_INT, .name = (n), .value = (v), .arg = (a), .def = (d), .lo = (l), .hi = (u), .help = (h)}
#define OPT_LONG_(n, v, a, d, l, u, h) \
    {.kind = OPT_LONG, .name = (n), .value = (v), .arg = (a), .def = (d), .lo = (l), .hi = (u), .help = (h)}
#define OPT_U64_(n, v, a, d, h) {.kind = OPT_U64, .name = (n), .value = (v), .arg = (a), .def = (d), .help = (h)}
#define OPT_DOUBLE_(n, v, a, d, l, u, h) \
    {.kind = OPT_DOUBLE, .name = (n), .value = (v), .arg = (a), .def = (d), .dlo = (l), .dhi = (u), .help = (h)}
#define OPT_CHOICE_(n, v, c, d, h) \
    {.kind = OPT_CHOICE, .name = (n), .value = (v), .arg = (c), .def = (d), .choices = (c), .help = (h)}
#define OPT_END_ {.kind = OPT_END}

typedef struct {
    const char *name;        /* the command: "sweep" */
    const char *usage;       /* usage line(s) after "usage: tq ", '\n' separated: "sweep DUMP... [options]" */
    const char *about;       /* paragraph printed after the usage lines (may be NULL) */
    const tq_option *opts;
    const char *epilog;      /* printed after the options (may be NULL) */
} tq_cmd_spec;

/* Parse argv[1..argc) against spec->opts: defaults first, then each argument. Options take their value as the next
 * argument or after '=' (--bits=3); arguments not starting with '-' (and "-" itself) are positionals, stored in
 * pos[] (pos must hold argc entries), their count returned. -h/--help prints opt_help to stdout and exits 0; an
 * unknown option, a missing or bad value is a usage error (exit 2) naming the option. */
int opt_parse(const tq_cmd_spec *spec, int argc, char **argv, const char **pos);
/* The --help text generated from the table. */
void opt_help(const tq_cmd_spec *spec, FILE *f);

#endif
