/* cli/args.c — the one option parser of every command: getopt_long over the
 * command's table, options anywhere among the operands, and the same usage
 * errors (exit 2) for every command. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#if !defined(__GLIBC__)
extern int optreset; /* BSD and macOS: restart getopt's scan */
#endif

void qv_cli_args_init(qv_cli_args *p, const char *cmd, int argc, char **argv,
                      const struct option *lo, const char **pos, int max)
{
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->argc = argc;
    p->argv = argv;
    p->lo = lo;
    p->pos = pos;
    p->max = max;
    /* '+': stop at each operand (collected by qv_cli_next), as BSD's
     * getopt does anyway; ':': a missing value is told from an unknown
     * option. An option whose id is a character has that short form. */
    size_t n = 0;
    p->shorts[n++] = '+';
    p->shorts[n++] = ':';
    for (const struct option *o = lo; o->name && n + 3 < sizeof p->shorts; o++)
        if (o->val > ' ' && o->val < 127) {
            p->shorts[n++] = (char)o->val;
            if (o->has_arg == required_argument)
                p->shorts[n++] = ':';
        }
    p->shorts[n] = '\0';
#if defined(__GLIBC__)
    optind = 0; /* glibc: a full restart, from argv[1] */
#else
    optreset = 1;
    optind = 1;
#endif
    opterr = 0;
}

int qv_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qvac %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'qvac %s --help'.\n", cmd);
    va_end(ap);
    return QV_EXIT_USAGE;
}

static const struct option *by_id(const qv_cli_args *p, int id)
{
    for (const struct option *o = p->lo; o->name; o++)
        if (o->val == id)
            return o;
    return NULL;
}

/* argv[optind] as the next operand; QV_CLI_BAD past max. */
static int operand(qv_cli_args *p)
{
    if (p->npos >= p->max) {
        qv_cli_usage(p->cmd, "unexpected argument '%s'", p->argv[optind]);
        return QV_CLI_BAD;
    }
    p->pos[p->npos++] = p->argv[optind++];
    return 0;
}

int qv_cli_next(qv_cli_args *p)
{
    for (;;) {
        /* optind 0 is glibc's "not started yet": argv[1] is next */
        int at = optind ? optind : 1;
        if (!p->rest && at < p->argc && !strcmp(p->argv[at], "--")) {
            optind = at + 1;
            p->rest = 1; /* operands only from here */
        }
        int c = -1;
        if (!p->rest) {
            optopt = 0;
            c = getopt_long(p->argc, p->argv, p->shorts, p->lo, NULL);
        }
        if (c == '?' || c == ':') {
            const char *typed = p->argv[optind - 1];
            const struct option *o = optopt ? by_id(p, optopt) : NULL;
            /* (BSD's getopt_long answers ':' for --flag=value too) */
            if (o && o->has_arg == no_argument && !strncmp(typed, "--", 2))
                qv_cli_usage(p->cmd, "--%s takes no value", o->name);
            else if (c == ':' && o)
                qv_cli_usage(p->cmd, "--%s needs a value", o->name);
            else if (optopt && strncmp(typed, "--", 2))
                qv_cli_usage(p->cmd, "unknown option '-%c'", optopt);
            else
                qv_cli_usage(p->cmd, "unknown option '%s'", typed);
            return QV_CLI_BAD;
        }
        if (c != -1) {
            const struct option *o = by_id(p, c);
            p->name = o ? o->name : "";
            return c;
        }
        if (optind >= p->argc)
            return -1;
        if (operand(p))
            return QV_CLI_BAD;
    }
}

int qv_cli_long(const qv_cli_args *p, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(optarg, &end, 10);
    if (!*optarg || *end || errno || n < lo || n > hi)
        return qv_cli_usage(p->cmd, "--%s needs an integer in %ld..%ld (not '%s')",
                            p->name, lo, hi, optarg);
    *out = n;
    return 0;
}

int qv_cli_int(const qv_cli_args *p, int lo, int hi, int *out)
{
    long n;
    int rc = qv_cli_long(p, lo, hi, &n);
    if (!rc)
        *out = (int)n;
    return rc;
}

int qv_cli_u64(const qv_cli_args *p, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(optarg, &end, 10);
    if (!*optarg || *end || errno || optarg[0] == '-')
        return qv_cli_usage(p->cmd, "--%s needs a non-negative integer (not '%s')",
                            p->name, optarg);
    *out = n;
    return 0;
}

int qv_cli_double(const qv_cli_args *p, double lo, double hi, double *out)
{
    char *end = NULL;
    double d = strtod(optarg, &end);
    if (!*optarg || *end || !(d >= lo && d <= hi))
        return qv_cli_usage(p->cmd, "--%s needs a number in %g..%g (not '%s')", p->name,
                            lo, hi, optarg);
    *out = d;
    return 0;
}

int qv_cli_choice(const qv_cli_args *p, const char *const *words, int *out)
{
    for (int i = 0; words[i]; i++)
        if (!strcmp(optarg, words[i])) {
            *out = i;
            return 0;
        }
    char list[256] = "";
    for (int i = 0; words[i]; i++) {
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s",
                 i == 0 ? "" : words[i + 1] ? ", " : " or ", words[i]);
    }
    return qv_cli_usage(p->cmd, "--%s is %s (not '%s')", p->name, list, optarg);
}

int qv_cli_bad_value(const qv_cli_args *p, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return qv_cli_usage(p->cmd, "--%s: %s", p->name, why);
}
