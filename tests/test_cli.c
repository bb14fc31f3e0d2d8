/* tests/test_cli.c — cli/args: the one option parser every command uses
 * (getopt_long over the command's table) and its usage errors. */
#include <criterion/criterion.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

enum { O_STEPS = QV_CLI_ID, O_JSON, O_WEIGHTS, O_LR };
static const struct option lo[] = {
    {"model", required_argument, NULL, 'm'}, {"seed", required_argument, NULL, 's'},
    {"steps", required_argument, NULL, O_STEPS}, {"json", no_argument, NULL, O_JSON},
    {"weights", required_argument, NULL, O_WEIGHTS}, {"lr", required_argument, NULL, O_LR},
    {"long", required_argument, NULL, QV_CLI_ID + 10}, {NULL, 0, NULL, 0}};

/* What a run of the parser saw: each option as "id=value" (or "id"),
 * then the operands; its last return and what it printed on stderr. */
typedef struct seen {
    char opts[512];
    const char *pos[4];
    int npos, last;
    char err[1024];
} seen;

/* stderr into a file while the parser runs, then into buf */
typedef struct capture {
    char path[32];
    int fd, saved;
} capture;

static void capture_start(capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/qv-cli-XXXXXX");
    c->fd = mkstemp(c->path);
    cr_assert_geq(c->fd, 0);
    fflush(stderr);
    c->saved = dup(2);
    cr_assert_eq(dup2(c->fd, 2), 2);
}

static void capture_end(capture *c, char *buf, size_t n)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    cr_assert_not_null(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
    close(c->fd);
    unlink(c->path);
}

static void parse(seen *s, int max, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "cmd";
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    memset(s, 0, sizeof *s);
    capture cap;
    capture_start(&cap);
    qv_cli_args p;
    qv_cli_args_init(&p, "cmd", argc, argv, lo, s->pos, max);
    int c;
    size_t n = 0;
    while ((c = qv_cli_next(&p)) >= 0)
        n += (size_t)snprintf(s->opts + n, sizeof s->opts - n, "%s%s%s%s", n ? " " : "",
                              p.name, c == O_JSON ? "" : "=", c == O_JSON ? "" : optarg);
    s->last = c;
    s->npos = p.npos;
    capture_end(&cap, s->err, sizeof s->err);
}

#define PARSE(s, max, ...) parse(s, max, (const char *[]){__VA_ARGS__, NULL})

Test(cli, long_short_equals_and_attached_forms_read_alike)
{
    seen s;
    PARSE(&s, 0, "--model", "a.gguf", "--steps=3", "-s", "7", "-mb.gguf", "--json",
          "--lr", "-1e-3");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_expect_str_eq(s.opts, "model=a.gguf steps=3 seed=7 model=b.gguf json lr=-1e-3");
    cr_expect_str_eq(s.err, "");
}

Test(cli, options_go_anywhere_among_the_operands_and_dashdash_ends_them)
{
    seen s;
    PARSE(&s, 4, "x", "--json", "y", "--steps", "2", "--", "--json", "-s");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_expect_str_eq(s.opts, "json steps=2");
    cr_assert_eq(s.npos, 4);
    cr_expect_str_eq(s.pos[0], "x");
    cr_expect_str_eq(s.pos[1], "y");
    cr_expect_str_eq(s.pos[2], "--json");
    cr_expect_str_eq(s.pos[3], "-s");
    /* "--" first: the rest are operands, each once */
    PARSE(&s, 1, "--", "-s");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_expect_str_eq(s.opts, "");
    cr_assert_eq(s.npos, 1);
    cr_expect_str_eq(s.pos[0], "-s");
    PARSE(&s, 2, "--", "a", "--json");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_assert_eq(s.npos, 2);
    cr_expect_str_eq(s.pos[1], "--json");
    /* a lone "-" is an operand (stdin, by convention) */
    PARSE(&s, 1, "-");
    cr_expect_eq(s.last, -1);
    cr_expect_eq(s.npos, 1);
}

Test(cli, unique_prefixes_of_long_names_are_the_option)
{
    seen s;
    PARSE(&s, 0, "--ste", "5", "--we=f16");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_expect_str_eq(s.opts, "steps=5 weights=f16");
    /* --l is both --lr and --long: refused, not guessed */
    PARSE(&s, 0, "--l", "1");
    cr_expect_eq(s.last, QV_CLI_BAD);
    cr_expect_str_eq(s.err, "qvac cmd: unknown option '--l'\nTry 'qvac cmd --help'.\n");
}

Test(cli, usage_errors_are_one_line_and_the_help_hint)
{
    static const struct {
        const char *args[4], *err;
    } cases[] = {
        {{"--bogus"}, "unknown option '--bogus'"},
        {{"--bogus=1"}, "unknown option '--bogus=1'"},
        {{"-x"}, "unknown option '-x'"},
        {{"--steps"}, "--steps needs a value"},
        {{"-m"}, "--model needs a value"},
        {{"--json=yes"}, "--json takes no value"},
        {{"a", "b"}, "unexpected argument 'b'"},
        {{"--json", "a", "b"}, "unexpected argument 'b'"},
        {{"--", "a", "b"}, "unexpected argument 'b'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        seen s;
        parse(&s, 1, cases[i].args);
        char want[256];
        snprintf(want, sizeof want, "qvac cmd: %s\nTry 'qvac cmd --help'.\n", cases[i].err);
        cr_expect_eq(s.last, QV_CLI_BAD, "%s", cases[i].args[0]);
        cr_expect_str_eq(s.err, want, "%s", cases[i].args[0]);
    }
}

/* The parser can be run again in the same process (getopt's state reset). */
Test(cli, a_second_parse_starts_from_the_beginning)
{
    seen s;
    PARSE(&s, 0, "-s", "1", "-mx");
    cr_expect_str_eq(s.opts, "seed=1 model=x");
    PARSE(&s, 0, "-s", "2");
    cr_expect_eq(s.last, -1, "%s", s.err);
    cr_expect_str_eq(s.opts, "seed=2");
}

/* The value helpers: ranges and words, with the option's name in the error. */
static int value_of(const char *opt, const char *val, int (*check)(qv_cli_args *, void *),
                    void *out, char *err, size_t n)
{
    char *argv[] = {"cmd", (char *)opt, (char *)val, NULL};
    capture cap;
    capture_start(&cap);
    qv_cli_args p;
    qv_cli_args_init(&p, "cmd", 3, argv, lo, NULL, 0);
    int c = qv_cli_next(&p);
    int rc = c >= 0 ? check(&p, out) : -1;
    capture_end(&cap, err, n);
    return rc;
}

static int steps_1_100(qv_cli_args *p, void *out) { return qv_cli_long(p, 1, 100, out); }
static int lr_0_1(qv_cli_args *p, void *out) { return qv_cli_double(p, 0, 1, out); }
static int seed_u64(qv_cli_args *p, void *out) { return qv_cli_u64(p, out); }
static int weights_word(qv_cli_args *p, void *out)
{
    static const char *const w[] = {"ternary", "f16", "bf16", NULL};
    return qv_cli_choice(p, w, out);
}

Test(cli, values_are_checked_with_the_option_named)
{
    char err[512];
    long n = 0;
    cr_expect_eq(value_of("--steps", "42", steps_1_100, &n, err, sizeof err), 0);
    cr_expect_eq(n, 42);
    for (const char *const *bad = (const char *const[]){"0", "101", "4x", "", "1e2", NULL};
         *bad; bad++) {
        cr_expect_eq(value_of("--steps", *bad, steps_1_100, &n, err, sizeof err),
                     QV_EXIT_USAGE, "%s", *bad);
        char want[128];
        snprintf(want, sizeof want, "qvac cmd: --steps needs an integer in 1..100 (not "
                 "'%s')\nTry 'qvac cmd --help'.\n", *bad);
        cr_expect_str_eq(err, want);
    }
    double d = 0;
    cr_expect_eq(value_of("--lr", "2e-3", lr_0_1, &d, err, sizeof err), 0);
    cr_expect_float_eq(d, 2e-3, 1e-12);
    cr_expect_eq(value_of("--lr", "nan", lr_0_1, &d, err, sizeof err), QV_EXIT_USAGE);
    unsigned long long u = 0;
    cr_expect_eq(value_of("-s", "18446744073709551615", seed_u64, &u, err, sizeof err), 0);
    cr_expect_eq(u, 18446744073709551615ull);
    cr_expect_eq(value_of("--seed", "-1", seed_u64, &u, err, sizeof err), QV_EXIT_USAGE);
    cr_expect(strstr(err, "--seed needs a non-negative integer (not '-1')"), "%s", err);
    int k = -1;
    cr_expect_eq(value_of("--weights", "f16", weights_word, &k, err, sizeof err), 0);
    cr_expect_eq(k, 1);
    cr_expect_eq(value_of("--weights", "f32", weights_word, &k, err, sizeof err),
                 QV_EXIT_USAGE);
    cr_expect_str_eq(err, "qvac cmd: --weights is ternary, f16 or bf16 (not 'f32')\n"
                          "Try 'qvac cmd --help'.\n");
}
