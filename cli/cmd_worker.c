/* cli/cmd_worker.c — `qvac worker`: lend this machine's devices to a
 * scheduler (worker/worker.h does the work; this parses and prints). */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "train/bench.h"
#include "worker/worker.h"

void qv_help_worker(FILE *out)
{
    fprintf(out,
        "usage: qvac worker --join URL [--token T] [--devices LIST] [--cache-dir DIR]\n"
        "                   [--no-tune] [--insecure] [--scheduler-key Z85] [--name N]\n"
        "                   [--cache-size GiB] [--tune-db PATH] [--tune-evals N]\n"
        "                   [--no-bench] [--bench-model M]\n\n"
        "Runs fine-tuning jobs for the scheduler at URL (`qvac scheduler`): enumerates\n"
        "the devices and enrolls at once; autotunes the devices whose tune cache is\n"
        "cold meanwhile (listed as `tuning N/M` in `qvac workers`, given no job until\n"
        "done), benchmarks each device (`qvac bench`, for `qvac report`), then takes\n"
        "one job per device at a time, streaming progress and uploading checkpoints,\n"
        "the adapter and the metrics. Reconnects with back-off when the scheduler goes\n"
        "away. Ctrl-C (SIGINT/SIGTERM) stops the jobs at their next step, uploads their\n"
        "checkpoints and hands them back; a second Ctrl-C hands them back at once.\n\n"
        "options:\n"
        "  --join URL          the scheduler, e.g. tcp://host:5555 (required)\n"
        "  --token T           enrollment token from `qvac token` (first time only: the\n"
        "                      worker keeps its key in the cache folder)\n"
        "  --devices LIST      device ids, comma-separated (default: all but ref)\n"
        "  --cache-dir DIR     key, blob cache and job folders\n"
        "                      (default: $XDG_CACHE_HOME/qvac/worker)\n"
        "  --cache-size GiB    cap of the blob cache (default 20)\n"
        "  --no-tune           do not autotune cold devices\n"
        "  --tune-evals N      configurations per kernel when tuning (default 12)\n"
        "  --tune-db PATH      tune cache (default: $XDG_DATA_HOME/qvac/tune.db)\n"
        "  --no-bench          do not run `qvac bench` on each device once enrolled\n"
        "                      (its result goes to the scheduler for `qvac report`)\n"
        "  --bench-model M     the model of that benchmark (builtin, 700m, 1.3b, 3b;\n"
        "                      default builtin)\n"
        "  --insecure          no CURVE (only with a scheduler run with --insecure)\n"
        "  --scheduler-key Z85 the scheduler's public key (default: from the token)\n"
        "  --name N            name shown in `qvac workers` (default: host name)\n"
        "  -h, --help          this help\n");
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    if (g_stop < 2)
        g_stop++;
}

static void log_line(void *user, const char *line)
{
    (void)user;
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    fprintf(stderr, "%s worker: %s\n", ts, line);
}

static int tune_progress(void *user, const qv_tune_progress *p)
{
    size_t *last = user;
    if (p->evals < *last)
        *last = 0;
    if (p->evals >= *last + 4 || p->evals == p->budget) {
        *last = p->evals;
        fprintf(stderr, "tuning %s %s %s: %zu/%zu, best %.3g ms\n", p->device,
                p->kernel, p->bucket, p->evals, p->budget,
                isfinite(p->best_ns) ? p->best_ns / 1e6 : 0.0);
    }
    return 0;
}

int qv_cmd_worker(int argc, char **argv)
{
    qv_worker_opts o;
    memset(&o, 0, sizeof o);
    const char *tune_db = NULL;
    enum { O_NO_TUNE = QV_CLI_ID, O_NO_BENCH, O_INSECURE, O_JOIN, O_TOKEN, O_DEVICES,
           O_CACHE_DIR, O_KEY, O_NAME, O_BENCH_MODEL, O_TUNE_DB, O_CACHE_SIZE,
           O_TUNE_EVALS };
    static const struct option lo[] = {
        {"no-tune", no_argument, NULL, O_NO_TUNE},
        {"no-bench", no_argument, NULL, O_NO_BENCH},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"join", required_argument, NULL, O_JOIN},
        {"token", required_argument, NULL, O_TOKEN},
        {"devices", required_argument, NULL, O_DEVICES},
        {"cache-dir", required_argument, NULL, O_CACHE_DIR},
        {"scheduler-key", required_argument, NULL, O_KEY},
        {"name", required_argument, NULL, O_NAME},
        {"bench-model", required_argument, NULL, O_BENCH_MODEL},
        {"tune-db", required_argument, NULL, O_TUNE_DB},
        {"cache-size", required_argument, NULL, O_CACHE_SIZE},
        {"tune-evals", required_argument, NULL, O_TUNE_EVALS},
        {NULL, 0, NULL, 0}};
    qv_cli_args p;
    qv_cli_args_init(&p, "worker", argc, argv, lo, NULL, 0);
    int c, rc = 0;
    double g;
    long n;
    while (!rc && (c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case O_NO_TUNE: o.no_tune = true; break;
        case O_NO_BENCH: o.no_bench = true; break;
        case O_INSECURE: o.insecure = true; break;
        case O_JOIN: o.join = optarg; break;
        case O_TOKEN: o.token = optarg; break;
        case O_DEVICES: o.devices = optarg; break;
        case O_CACHE_DIR: o.cache_dir = optarg; break;
        case O_KEY: o.server_key = optarg; break;
        case O_NAME: o.name = optarg; break;
        case O_BENCH_MODEL: o.bench_model = optarg; break;
        case O_TUNE_DB: tune_db = optarg; break;
        case O_CACHE_SIZE:
            if (!(rc = qv_cli_double(&p, 0.001, 1e6, &g)))
                o.cache_bytes = (uint64_t)(g * (double)(1ull << 30));
            break;
        case O_TUNE_EVALS:
            if (!(rc = qv_cli_long(&p, 1, 100000, &n)))
                o.tune_budget_evals = (size_t)n;
            break;
        }
    }
    if (rc)
        return rc;
    if (!o.join)
        return qv_cli_usage("worker", "--join URL is required (the scheduler, "
                            "e.g. tcp://host:5555)");
    qv_err err;
    int32_t bb, bs, bn;
    if (o.bench_model && qv_bench_defaults(o.bench_model, &bb, &bs, &bn, &err))
        return qv_cli_usage("worker", "--bench-model: %s", err.msg);
    char db[1024];
    if (tune_db)
        o.tune_db = tune_db;
    else if (!qv_tune_cache_default_path(db, sizeof db, &err))
        o.tune_db = db;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* over a file size limit a write fails (EFBIG) and the job is handed
     * back, rather than the worker dying */
    signal(SIGXFSZ, SIG_IGN);
    size_t last = 0;
    o.stop = &g_stop;
    o.log = log_line;
    o.tune_progress = tune_progress;
    o.tune_progress_user = &last;
    if (qv_worker_run(&o, &err))
        return qv_cli_error(&err);
    return QV_EXIT_OK;
}
