/* cli/cmd_bench.c — `qvac bench`: the standard ternary-vs-16-bit comparison
 * on one device (train/bench.h), as a worker runs it for the fleet report. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/cache.h"
#include "cli/cli.h"
#include "train/bench.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

void qv_help_bench(FILE *out)
{
    fprintf(out,
        "usage: qvac bench [--model M] [--device ID] [--steps N] [--batch B] [--seq S]\n"
        "                  [--no-tune] [--tune-db PATH] [--json]\n\n"
        "The standard comparison of one device, the one each worker runs for the fleet\n"
        "report (`qvac report`): the same short LoRA fine-tune (rank 16, targets q,v, the\n"
        "same pseudo-random text every run) with the base weights ternary and then in\n"
        "16 bits, and for each: steady-state tokens/s (steps 2..n), peak device memory\n"
        "by category, MFU, and the tuned base matmul's speed over the default\n"
        "configuration's. The kernels are tuned at the model's shapes first (cached).\n\n"
        "  -m, --model M     builtin (default: the built-in model), 700m, 1.3b, 3b (the\n"
        "                    shapes of 1bitLLM's bitnet_b1_58 large / xl / 3B, synthetic\n"
        "                    weights)\n"
        "  -d, --device ID   the device (`qvac devices`; default: as finetune picks)\n"
        "      --steps N     optimizer steps a mode, the first a warm-up (default per\n"
        "                    model: 6 builtin, 4 at 700m and 1.3b, 3 at 3b)\n"
        "      --batch B, --seq S   tokens a step (default 4 x 128 builtin, 1 x 128\n"
        "                    700m, 1 x 64 1.3b and 3b)\n"
        "      --no-tune     run the cached (or default) configurations\n"
        "      --tune-db P   the autotune cache (default: `qvac tune`'s)\n"
        "      --json        one JSON object on stdout (the fleet report's row)\n"
        "\nExit status: 0 done, 1 failed, 2 usage, 130 interrupted.\n");
}

static void log_line(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "%s\n", line);
}

int qv_cmd_bench(int argc, char **argv)
{
    enum { O_STEPS = QV_CLI_ID, O_BATCH, O_SEQ, O_NO_TUNE, O_TUNE_DB, O_JSON };
    static const struct option lo[] = {
        {"model", required_argument, NULL, 'm'}, {"device", required_argument, NULL, 'd'},
        {"steps", required_argument, NULL, O_STEPS},
        {"batch", required_argument, NULL, O_BATCH},
        {"seq", required_argument, NULL, O_SEQ},
        {"no-tune", no_argument, NULL, O_NO_TUNE},
        {"tune-db", required_argument, NULL, O_TUNE_DB},
        {"json", no_argument, NULL, O_JSON}, {NULL, 0, NULL, 0}};
    qv_bench_opts o = {0};
    const char *device = NULL, *db = NULL;
    int json = 0, tune = 1, c, rc = 0;
    qv_cli_args p;
    qv_cli_args_init(&p, "bench", argc, argv, lo, NULL, 0);
    while (!rc && (c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case 'm': o.model = optarg; break;
        case 'd': device = optarg; break;
        case O_STEPS: rc = qv_cli_int(&p, 2, 64, &o.steps); break;
        case O_BATCH: rc = qv_cli_int(&p, 1, 64, &o.batch); break;
        case O_SEQ: rc = qv_cli_int(&p, 2, 4096, &o.seq); break;
        case O_NO_TUNE: tune = 0; break;
        case O_TUNE_DB: db = optarg; break;
        case O_JSON: json = 1; break;
        }
    }
    if (rc)
        return rc;
    qv_err err = {0};
    int32_t b, s, n;
    if (qv_bench_defaults(o.model, &b, &s, &n, &err))
        return qv_cli_usage("bench", "%s", err.msg);
    qv_devlist *devs = NULL;
    if (qv_devlist_open(&devs, &err))
        return qv_cli_error(&err);
    qv_device *dev = qv_cli_pick_device(devs, device, &err);
    if (!dev) {
        qv_devlist_destroy(&devs);
        return qv_cli_error(&err);
    }
    qv_tune_cache *cache = NULL;
    char path[1024];
    if (!db && !qv_tune_cache_default_path(path, sizeof path, &err))
        db = path;
    if (db && qv_tune_cache_open(db, tune ? 0 : 1, 2000, &cache, &err)) {
        if (tune) { /* cannot write it: run what it holds, and say so */
            fprintf(stderr, "qvac bench: not tuning (%s)\n", err.msg);
            tune = 0;
            memset(&err, 0, sizeof err);
            qv_tune_cache_open(db, 1, 2000, &cache, &err);
        }
    }
    o.cache = cache;
    o.ref = tune ? qv_devlist_find(devs, "ref") : NULL;
    o.stop = &g_stop;
    o.log = log_line;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    qv_bench_result r;
    qv_status st = qv_bench_run(dev, &o, &r, &err);
    qv_tune_cache_destroy(&cache);
    qv_devlist_destroy(&devs);
    if (g_stop) {
        fprintf(stderr, "qvac bench: interrupted\n");
        return 130;
    }
    if (st)
        return qv_cli_error(&err);
    if (json) {
        qv_cli_print_json(qv_bench_to_json(&r));
        return QV_EXIT_OK;
    }
    const qv_bench_mode *t = &r.mode[0], *f = &r.mode[1];
    char b1[32], b2[32];
    printf("\nbench: %s on %s (%s, %s, driver %s), fingerprint %s, qvac %s\n", r.model,
           r.device, r.name, r.vendor, r.driver, r.fingerprint, r.version);
    printf("%d steps of %d x %d tokens a mode, the first a warm-up\n\n", r.steps, r.batch,
           r.seq);
    printf("%-22s %14s %14s %10s\n", "", "ternary", "f16", "ratio");
    printf("%-22s %14.1f %14.1f %9.2fx\n", "tokens/s (steady)", t->tokens_per_s,
           f->tokens_per_s, f->tokens_per_s > 0 ? t->tokens_per_s / f->tokens_per_s : 0);
    printf("%-22s %13.1f%% %13.1f%%\n", "MFU", 100 * t->mfu, 100 * f->mfu);
    qv_fmt_bytes(t->peak_bytes, b1, sizeof b1);
    qv_fmt_bytes(f->peak_bytes, b2, sizeof b2);
    printf("%-22s %14s %14s %9.2fx\n", "peak device memory", b1, b2,
           f->peak_bytes ? (double)t->peak_bytes / (double)f->peak_bytes : 0);
    for (int g = 0; g < QV_MEM_NTAGS; g++) {
        if (!t->by_tag[g] && !f->by_tag[g])
            continue;
        qv_fmt_bytes(t->by_tag[g], b1, sizeof b1);
        qv_fmt_bytes(f->by_tag[g], b2, sizeof b2);
        printf("  %-20s %14s %14s\n", qv_mem_tag_name((qv_mem_tag)g), b1, b2);
    }
    if (r.tuned_vs_default > 0)
        printf("\ntuned / default base matmul: %.2fx (%.1f / %.1f GFLOP/s); tuning took "
               "%.1f s\n", r.tuned_vs_default, t->gemm_gflops, r.default_gflops, r.tune_s);
    printf("memory reduction: %.1f%% of peak device memory\n",
           f->peak_bytes ? 100.0 * (1.0 - (double)t->peak_bytes / (double)f->peak_bytes)
                         : 0.0);
    return QV_EXIT_OK;
}
