/* cli/cli.h — what the subcommands share: the table of commands, the
 * device-list helpers and small printing helpers. cli/ only parses and
 * prints; the work is done below it. */
#ifndef QV_CLI_H
#define QV_CLI_H

#include <stdio.h>

#include "kernels/backend.h"

typedef struct qv_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*help)(FILE *out);
} qv_cmd;

/* Exit codes of every command. */
/* Exit status of every command: 0 done, 1 failed, 2 usage error (an
 * unknown option, a bad value, an unknown device), 130 interrupted
 * (SIGINT or SIGTERM: 128 + 2, as shells report Ctrl-C). */
enum { QV_EXIT_OK = 0, QV_EXIT_FAIL = 1, QV_EXIT_USAGE = 2, QV_EXIT_INTERRUPTED = 130 };

int qv_cmd_devices(int argc, char **argv);
void qv_help_devices(FILE *out);
int qv_cmd_check(int argc, char **argv);
void qv_help_check(FILE *out);
int qv_cmd_kernels(int argc, char **argv);
void qv_help_kernels(FILE *out);
int qv_cmd_tune(int argc, char **argv);
void qv_help_tune(FILE *out);
int qv_cmd_finetune(int argc, char **argv);
void qv_help_finetune(FILE *out);
int qv_cmd_compare(int argc, char **argv);
void qv_help_compare(FILE *out);
int qv_cmd_bench(int argc, char **argv);
void qv_help_bench(FILE *out);
int qv_cmd_generate(int argc, char **argv);
void qv_help_generate(FILE *out);
int qv_cmd_eval(int argc, char **argv);
void qv_help_eval(FILE *out);
int qv_cmd_pretrain(int argc, char **argv);
void qv_help_pretrain(FILE *out);
int qv_cmd_inspect(int argc, char **argv);
void qv_help_inspect(FILE *out);
int qv_cmd_export(int argc, char **argv);
void qv_help_export(FILE *out);
int qv_cmd_scheduler(int argc, char **argv);
void qv_help_scheduler(FILE *out);
int qv_cmd_token(int argc, char **argv);
void qv_help_token(FILE *out);
int qv_cmd_clients(int argc, char **argv);
void qv_help_clients(FILE *out);
int qv_cmd_submit(int argc, char **argv);
void qv_help_submit(FILE *out);
int qv_cmd_jobs(int argc, char **argv);
void qv_help_jobs(FILE *out);
int qv_cmd_workers(int argc, char **argv);
/* `qvac workers remove ID [--data DIR]` (cmd_scheduler.c: on the store) */
int qv_cmd_workers_remove(int argc, char **argv);
void qv_help_workers(FILE *out);
int qv_cmd_logs(int argc, char **argv);
void qv_help_logs(FILE *out);
int qv_cmd_cancel(int argc, char **argv);
void qv_help_cancel(FILE *out);
int qv_cmd_fetch(int argc, char **argv);
void qv_help_fetch(FILE *out);
int qv_cmd_report(int argc, char **argv);
void qv_help_report(FILE *out);
int qv_cmd_keys(int argc, char **argv);
void qv_help_keys(FILE *out);
int qv_cmd_worker(int argc, char **argv);
void qv_help_worker(FILE *out);
int qv_cmd_tokenize(int argc, char **argv);
void qv_help_tokenize(FILE *out);

/* Prints "qvac: <msg>" to stderr; returns QV_EXIT_FAIL. */
int qv_cli_error(const qv_err *err);
/* Prints a usage error and the hint to run --help; returns QV_EXIT_USAGE. */
int qv_cli_usage(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The device named by want, else the one training runs on by default: a
 * GPU first, then OpenCL on the CPU (PoCL, multi-threaded), then Vulkan on
 * the CPU, then the reference. NULL (and err) when there is none. */
qv_device *qv_cli_pick_device(qv_devlist *devs, const char *want, qv_err *err);

/* Prints a JSON value (indented) on stdout and releases it. */
struct json_t;
void qv_cli_print_json(struct json_t *v);

/* The option parser of every command: getopt_long over the command's
 * table, with options anywhere among the operands (portable: BSD's getopt
 * stops at the first operand), "--" ending the options, and one set of
 * usage errors. An option whose id (val) is a character also has that
 * short form (-m FILE, -mFILE); long-only options use ids from 256 up.
 * --opt=value and unambiguous prefixes of long names work as getopt_long
 * reads them. */
struct option;
#define QV_CLI_ID 256     /* the first id of a long-only option */
#define QV_CLI_BAD (-2)   /* qv_cli_next: a usage error, already printed */
typedef struct qv_cli_args {
    const char *cmd;                /* for messages: "qvac CMD: ..." */
    int argc;
    char **argv;                    /* argv[0] is the command's name */
    const struct option *lo;        /* ends with a NULL name */
    char shorts[96];
    const char **pos;               /* the operands, in order */
    int max, npos;                  /* room in pos; how many were given */
    int rest;                       /* after "--" */
    const char *name;               /* the long name of the option just read */
} qv_cli_args;

void qv_cli_args_init(qv_cli_args *p, const char *cmd, int argc, char **argv,
                      const struct option *lo, const char **pos, int max);
/* The next option's id, its value in optarg; -1 at the end; QV_CLI_BAD
 * after printing the usage error (an unknown option, a missing value, a
 * value given to a flag, more than max operands). */
int qv_cli_next(qv_cli_args *p);
/* optarg as the value of the option just read, or QV_EXIT_USAGE after
 * saying what it needs ("--steps needs an integer in 1..100000000"). */
int qv_cli_long(const qv_cli_args *p, long lo, long hi, long *out);
int qv_cli_int(const qv_cli_args *p, int lo, int hi, int *out);
int qv_cli_u64(const qv_cli_args *p, unsigned long long *out);
int qv_cli_double(const qv_cli_args *p, double lo, double hi, double *out);
/* optarg as one of words (NULL-ended): *out is its index. */
int qv_cli_choice(const qv_cli_args *p, const char *const *words, int *out);
/* "qvac CMD: --NAME: <why>" for a value refused otherwise; QV_EXIT_USAGE. */
int qv_cli_bad_value(const qv_cli_args *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* "1.5 GiB" style. */
void qv_fmt_bytes(unsigned long long bytes, char *buf, size_t n);

#endif
