/* cli/main.c — `qvac`: finds the subcommand and hands it argv. The only
 * place that decides the process's exit code. */
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const qv_cmd commands[] = {
    {"devices", "list OpenCL, Vulkan and reference devices", qv_cmd_devices,
     qv_help_devices},
    {"check", "run every kernel on every device against the reference",
     qv_cmd_check, qv_help_check},
    {"kernels", "list the kernels and their tunable parameters",
     qv_cmd_kernels, qv_help_kernels},
    {"tune", "autotune the kernels on each device and cache the best",
     qv_cmd_tune, qv_help_tune},
    {"finetune", "LoRA fine-tuning of a BitNet model on one device",
     qv_cmd_finetune, qv_help_finetune},
    {"compare", "the same fine-tune with ternary and 16-bit weights, side by side",
     qv_cmd_compare, qv_help_compare},
    {"bench", "the standard ternary vs 16-bit comparison of one device (--json)",
     qv_cmd_bench, qv_help_bench},
    {"generate", "continue a prompt with a model (and an adapter)",
     qv_cmd_generate, qv_help_generate},
    {"eval", "loss and perplexity of a model (and an adapter) on data or text",
     qv_cmd_eval, qv_help_eval},
    {"pretrain", "train a BitNet model from scratch (quantisation-aware)",
     qv_cmd_pretrain, qv_help_pretrain},
    {"inspect", "what a GGUF model file is, and whether qvac can fine-tune it",
     qv_cmd_inspect, qv_help_inspect},
    {"export", "convert a LoRA adapter between qvac's GGUF and a PEFT folder",
     qv_cmd_export, qv_help_export},
    {"scheduler", "run the scheduler (jobs, blobs, workers) on this machine",
     qv_cmd_scheduler, qv_help_scheduler},
    {"token", "print a one-time worker enrollment token", qv_cmd_token,
     qv_help_token},
    {"clients", "admit a client key (clients add KEY)", qv_cmd_clients,
     qv_help_clients},
    {"submit", "submit a fine-tune to the scheduler (uploads what it lacks)",
     qv_cmd_submit, qv_help_submit},
    {"jobs", "list the scheduler's jobs", qv_cmd_jobs, qv_help_jobs},
    {"workers", "list the scheduler's workers and their devices",
     qv_cmd_workers, qv_help_workers},
    {"logs", "print (or follow) a job's event log", qv_cmd_logs, qv_help_logs},
    {"cancel", "cancel a job", qv_cmd_cancel, qv_help_cancel},
    {"fetch", "download a finished job's adapter and metrics", qv_cmd_fetch,
     qv_help_fetch},
    {"report", "the fleet's benchmark report (Markdown, JSON, SVG)", qv_cmd_report,
     qv_help_report},
    {"keys", "show (create) this account's client key for the scheduler",
     qv_cmd_keys, qv_help_keys},
    {"worker", "run jobs for a scheduler on this machine's devices",
     qv_cmd_worker, qv_help_worker},
    {"tokenize", "the token ids of a text with a GGUF model's vocabulary",
     qv_cmd_tokenize, qv_help_tokenize},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "qvac %s — LoRA fine-tuning of 1.58-bit (BitNet b1.58) models on "
            "OpenCL and Vulkan devices\n\n"
            "usage: qvac COMMAND [OPTIONS]\n\ncommands:\n",
            QV_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\noptions:\n  -h, --help     this help (`qvac COMMAND "
                 "--help` for a command's)\n  -V, --version  print the "
                 "version\n");
}

/* An unknown --device is a usage error (2) in every command. */
static int g_bad_device;

int qv_cli_error(const qv_err *err)
{
    fprintf(stderr, "qvac: %s\n", err && err->msg[0] ? err->msg : "failed");
    return g_bad_device ? QV_EXIT_USAGE : QV_EXIT_FAIL;
}

/* True if -h or --help comes among argv[1..] before any "--" (main
 * answers it for every command). */
static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

qv_device *qv_cli_pick_device(qv_devlist *devs, const char *want, qv_err *err)
{
    if (want) {
        qv_device *d = qv_devlist_find(devs, want);
        if (!d) {
            g_bad_device = 1;
            qv_fail(err, QV_ERR_NOT_FOUND,
                    "no device '%s'; `qvac devices` lists them", want);
        }
        return d;
    }
    qv_device *best = NULL;
    int best_rank = -1;
    for (size_t i = 0; i < devs->n; i++) {
        qv_device *d = devs->dev[i];
        int r = !d->info.is_cpu ? 3 : !strcmp(d->info.backend, "opencl") ? 2
              : !strcmp(d->info.backend, "vulkan") ? 1 : 0;
        if (r > best_rank) {
            best = d;
            best_rank = r;
        }
    }
    if (!best)
        qv_fail(err, QV_ERR_NOT_FOUND, "no device found (see `qvac devices`)");
    return best;
}

void qv_cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2));
    if (s)
        puts(s);
    else
        fprintf(stderr, "qvac: out of memory printing JSON\n");
    free(s);
    json_decref(v);
}

void qv_fmt_bytes(unsigned long long bytes, char *buf, size_t n)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%llu B", bytes);
    else
        snprintf(buf, n, "%.1f %s", v, unit[u]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QV_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0)
            for (size_t i = 0; i < N_COMMANDS; i++)
                if (!strcmp(commands[i].name, argv[2])) {
                    commands[i].help(stdout);
                    return QV_EXIT_OK;
                }
        usage(stdout);
        return QV_EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") ||
        !strcmp(cmd, "version")) {
        printf("qvac %s\n", QV_VERSION);
        return QV_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, cmd) != 0)
            continue;
        if (wants_help(argc - 1, argv + 1)) {
            commands[i].help(stdout);
            return QV_EXIT_OK;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "qvac: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return QV_EXIT_USAGE;
}
