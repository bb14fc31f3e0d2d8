/* cli/cmd_tune.c — `qvac tune`: find the best configuration of each kernel
 * on each device, once, and remember it (autotune/). */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/tune.h"
#include "cli/cli.h"
#include "common/progress.h"

void qv_help_tune(FILE *out)
{
    fprintf(out,
        "usage: qvac tune [--device ID] [--kernel NAME] [--strategy NAME]\n"
        "                 [--budget-evals N | --budget-seconds S] [--shape M,N,K[,R]]\n"
        "                 [--db PATH] [--force] [--seed N] [--json]\n"
        "       qvac tune --list [--db PATH] [--json]\n"
        "       qvac tune --export FILE | --import FILE [--db PATH]\n\n"
        "Searches each kernel's configurations (`qvac kernels`) on each device, verifying\n"
        "every candidate against the reference before timing it with the device's own\n"
        "timer, and caches the best per device, kernel source and shape bucket. A second\n"
        "run answers from the cache; an interrupted run (Ctrl-C) resumes where it stopped.\n\n"
        "options:\n"
        "  --device ID         only this device (default: every OpenCL and Vulkan device)\n"
        "  --kernel NAME       only this kernel (default: all of them)\n"
        "  --strategy NAME     exhaustive, random, anneal or greedy (default: %s)\n"
        "  --budget-evals N    configurations to measure per kernel and shape (default 40)\n"
        "  --budget-seconds S  or a time budget per kernel and shape\n"
        "  --shape M,N,K[,R]   tune at this shape (repeatable; default M=256, N=K=1024, R=16)\n"
        "  --db PATH           cache database (default: $XDG_DATA_HOME/qvac/tune.db)\n"
        "  --force             forget cached results for what is tuned and search again\n"
        "  --seed N            seed of the random strategies (default 1)\n"
        "  --list              list the cache, marking entries of changed kernels stale\n"
        "  --export FILE       write the cache's results to FILE (JSON)\n"
        "  --import FILE       merge results from FILE; never replaces a better entry\n"
        "  --json              print the result rows as JSON objects\n"
        "  -h, --help          this help\n", QV_DEFAULT_STRATEGY);
}

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

typedef struct tune_args {
    const char *device, *kernel, *strategy, *db, *export_path, *import_path;
    size_t budget_evals;
    double budget_s;
    int force, list, json;
    uint64_t seed;
    qv_shape shapes[8];
    int n_shapes;
} tune_args;

static int parse_shape(const char *s, qv_shape *out)
{
    int M = 0, N = 0, K = 0, R = 16;
    int n = sscanf(s, "%d,%d,%d,%d", &M, &N, &K, &R);
    if (n < 3 || M < 1 || N < 1 || K < 1 || R < 1 || R > 128)
        return -1;
    *out = (qv_shape){M, N, K, R};
    return 0;
}

static int parse_args(int argc, char **argv, tune_args *a)
{
    memset(a, 0, sizeof *a);
    a->seed = 1;
    enum { O_JSON = QV_CLI_ID, O_FORCE, O_LIST, O_DEVICE, O_KERNEL, O_STRATEGY, O_DB,
           O_EXPORT, O_IMPORT, O_EVALS, O_SECONDS, O_SEED, O_SHAPE };
    static const struct option lo[] = {
        {"json", no_argument, NULL, O_JSON},
        {"force", no_argument, NULL, O_FORCE},
        {"list", no_argument, NULL, O_LIST},
        {"device", required_argument, NULL, O_DEVICE},
        {"kernel", required_argument, NULL, O_KERNEL},
        {"strategy", required_argument, NULL, O_STRATEGY},
        {"db", required_argument, NULL, O_DB},
        {"export", required_argument, NULL, O_EXPORT},
        {"import", required_argument, NULL, O_IMPORT},
        {"budget-evals", required_argument, NULL, O_EVALS},
        {"budget-seconds", required_argument, NULL, O_SECONDS},
        {"seed", required_argument, NULL, O_SEED},
        {"shape", required_argument, NULL, O_SHAPE},
        {NULL, 0, NULL, 0}};
    qv_cli_args p;
    qv_cli_args_init(&p, "tune", argc, argv, lo, NULL, 0);
    int c, rc = 0;
    long n;
    unsigned long long u;
    while (!rc && (c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case O_JSON: a->json = 1; break;
        case O_FORCE: a->force = 1; break;
        case O_LIST: a->list = 1; break;
        case O_DEVICE: a->device = optarg; break;
        case O_KERNEL: a->kernel = optarg; break;
        case O_STRATEGY: a->strategy = optarg; break;
        case O_DB: a->db = optarg; break;
        case O_EXPORT: a->export_path = optarg; break;
        case O_IMPORT: a->import_path = optarg; break;
        case O_EVALS:
            if (!(rc = qv_cli_long(&p, 1, 100000000, &n)))
                a->budget_evals = (size_t)n;
            break;
        case O_SECONDS: rc = qv_cli_double(&p, 0.001, 1e9, &a->budget_s); break;
        case O_SEED:
            if (!(rc = qv_cli_u64(&p, &u)))
                a->seed = u;
            break;
        case O_SHAPE:
            if (a->n_shapes == 8 || parse_shape(optarg, &a->shapes[a->n_shapes]))
                rc = qv_cli_bad_value(&p, "wants M,N,K[,R] with positive sizes and "
                                      "R <= 128 (at most 8 shapes; not '%s')", optarg);
            else
                a->n_shapes++;
            break;
        }
    }
    if (rc)
        return rc;
    if (a->strategy) {
        int ok = 0;
        for (int i = 0; qv_strategies[i]; i++)
            ok |= !strcmp(qv_strategies[i], a->strategy);
        if (!ok)
            return qv_cli_usage("tune", "no strategy '%s' (exhaustive, random, anneal, greedy)", a->strategy);
    }
    if (a->kernel && !qv_kernel_find(a->kernel))
        return qv_cli_usage("tune", "no kernel named '%s' (see `qvac kernels`)", a->kernel);
    if (!a->budget_evals && !a->budget_s)
        a->budget_evals = 40;
    if (!a->n_shapes) {
        a->shapes[0] = (qv_shape){256, 1024, 1024, 16};
        a->n_shapes = 1;
    }
    return 0;
}

/* ---- progress ----------------------------------------------------------- */

typedef struct prog_state {
    qv_progress line;
    size_t last_line; /* off a terminal: a line every 10 evaluations */
} prog_state;

static int progress(void *user, const qv_tune_progress *p)
{
    prog_state *ps = user;
    double sp = isinf(p->default_ns) || isinf(p->best_ns) ? 0 : p->default_ns / p->best_ns;
    if (!ps->line.tty && p->evals < ps->last_line + 10 && p->evals != p->budget)
        return 0;
    ps->last_line = p->evals;
    char bar[32], extra[64] = "";
    qv_progress_bar(bar, sizeof bar, 24, (double)p->evals, (double)p->budget);
    size_t o = 0;
    if (sp > 0)
        o += (size_t)snprintf(extra + o, sizeof extra - o, " (%.2fx default)", sp);
    if (p->failures && o < sizeof extra)
        snprintf(extra + o, sizeof extra - o, "  %zu failed", p->failures);
    qv_progress_line(&ps->line, 1, "tune %s %s %s [%s] %zu/%zu  best %.3g ms%s", p->device,
                     p->kernel, p->bucket, bar, p->evals, p->budget, p->best_ns / 1e6, extra);
    return 0;
}

/* ---- listing ------------------------------------------------------------ */

typedef struct src_lookup {
    qv_devlist *devs;
    char hash[17];
} src_lookup;

static const char *current_src(const char *backend, const char *kernel, void *user)
{
    src_lookup *l = user;
    const qv_kernel_decl *k = qv_kernel_find(kernel);
    if (!k)
        return "";
    for (size_t i = 0; i < l->devs->n; i++)
        if (!strcmp(l->devs->dev[i]->info.backend, backend) &&
            qv_kernel_source_hash(l->devs->dev[i], k, l->hash, NULL) == QV_OK)
            return l->hash;
    return NULL;
}

/* GB/s of the tuned configuration: the bytes a launch must move at the
 * bucket's tuning shape over its median time. */
static double entry_gbps(const qv_tune_entry *e, const qv_kernel_decl *k)
{
    int M, N, K, R;
    if (!k || e->median_ns <= 0 ||
        sscanf(e->key.bucket, "M%d:N%d:K%d:R%d", &M, &N, &K, &R) != 4)
        return 0;
    qv_shape s = {M, N ? N : 1, K, R ? R : 1};
    return qv_kernel_bytes(k, s) / e->median_ns;
}

/* Tuned ÷ default, and the default's GFLOP/s; 0 when the default failed
 * (default_ns 0). */
static double entry_speedup(const qv_tune_entry *e)
{
    return e->default_ns > 0 && e->median_ns > 0 ? e->default_ns / e->median_ns : 0;
}

static double entry_default_gflops(const qv_tune_entry *e)
{
    return e->default_ns > 0 ? e->gflops * e->median_ns / e->default_ns : 0;
}

static json_t *entry_json(const qv_tune_entry *e, const qv_kernel_decl *k,
                          const char *device_id)
{
    double sp = entry_speedup(e), def_gflops = entry_default_gflops(e);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i, s:s, s:b, s:I}",
        "device", device_id ? device_id : e->device_name, "fingerprint", e->key.fingerprint,
        "kernel", e->key.kernel, "shape", e->key.bucket, "config", e->config,
        "strategy", e->strategy, "default_ns", e->default_ns, "tuned_ns", e->median_ns,
        "default_gflops", def_gflops, "tuned_gflops", e->gflops,
        "tuned_gbps", entry_gbps(e, k), "speedup", sp,
        "evals", e->evals, "failures", e->failures, "src_hash", e->key.src_hash,
        "stale", e->stale, "created_at", (json_int_t)e->created_at);
}

static void print_row(const qv_tune_entry *e, const char *device_id, int from_cache)
{
    double gbps = entry_gbps(e, qv_kernel_find(e->key.kernel));
    double sp = entry_speedup(e), def_g = entry_default_gflops(e);
    char spx[16] = "     n/a"; /* the default failed: no ratio */
    if (sp > 0)
        snprintf(spx, sizeof spx, "%7.2fx", sp);
    printf("%-10s %-17s %-24s %9.2f %9.2f %7.2f %s %5d %6d%s\n", device_id,
           e->key.kernel, e->key.bucket, def_g, e->gflops, gbps, spx, e->evals,
           e->failures, from_cache ? "  (cached)" : e->stale ? "  (stale)" : "");
}

static void print_header(void)
{
    printf("%-10s %-17s %-24s %9s %9s %7s %8s %5s %6s\n", "DEVICE", "KERNEL", "SHAPE",
           "DEFAULT", "TUNED", "GB/S", "SPEEDUP", "EVALS", "FAILED");
}

static int do_list(qv_tune_cache *cache, qv_devlist *devs, int as_json)
{
    src_lookup l = {devs, {0}};
    qv_tune_entry *e = NULL;
    size_t n = 0;
    qv_err err;
    if (qv_tune_cache_list(cache, current_src, &l, &e, &n, &err))
        return qv_cli_error(&err);
    json_t *arr = as_json ? json_array() : NULL;
    if (!as_json) {
        print_header();
        printf("%s", n ? "" : "(the cache is empty: run `qvac tune`)\n");
    }
    for (size_t i = 0; i < n; i++) {
        const char *id = e[i].device_name;
        for (size_t d = 0; d < devs->n; d++)
            if (!strcmp(devs->dev[d]->info.fingerprint, e[i].key.fingerprint))
                id = devs->dev[d]->info.id;
        if (arr)
            json_array_append_new(arr, entry_json(&e[i], qv_kernel_find(e[i].key.kernel), id));
        else
            print_row(&e[i], id, 0);
    }
    if (arr) {
        qv_cli_print_json(arr);
    } else if (n)
        printf("DEFAULT and TUNED in GFLOP/s at the tuning shape (ternary: 2*M*N*K "
               "equivalent); GB/S: the least bytes a launch moves, tuned\n");
    free(e);
    return QV_EXIT_OK;
}

int qv_cmd_tune(int argc, char **argv)
{
    tune_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    qv_err err;
    char path[1024];
    if (a.db)
        snprintf(path, sizeof path, "%s", a.db);
    else if (qv_tune_cache_default_path(path, sizeof path, &err))
        return qv_cli_error(&err);
    qv_tune_cache *cache = NULL;
    if (qv_tune_cache_open(path, 0, 2000, &cache, &err))
        return qv_cli_error(&err);
    if (a.export_path || a.import_path) {
        size_t n1 = 0, n2 = 0;
        qv_status st = a.export_path
            ? qv_tune_cache_export(cache, a.export_path, &n1, &err)
            : qv_tune_cache_import(cache, a.import_path, &n1, &n2, &err);
        qv_tune_cache_destroy(&cache);
        if (st)
            return qv_cli_error(&err);
        if (a.export_path)
            printf("exported %zu entries to %s\n", n1, a.export_path);
        else
            printf("imported %zu entries from %s (%zu skipped: the cache had "
                   "them at least as good)\n", n1, a.import_path, n2);
        return QV_EXIT_OK;
    }
    qv_devlist *devs = NULL;
    if (qv_devlist_open(&devs, &err)) {
        qv_tune_cache_destroy(&cache);
        return qv_cli_error(&err);
    }
    if (a.list) {
        rc = do_list(cache, devs, a.json);
        qv_devlist_destroy(&devs);
        qv_tune_cache_destroy(&cache);
        return rc;
    }
    if (a.device && !qv_devlist_find(devs, a.device)) {
        fprintf(stderr, "qvac: no device '%s'; `qvac devices` lists them\n", a.device);
        qv_devlist_destroy(&devs);
        qv_tune_cache_destroy(&cache);
        return QV_EXIT_USAGE;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    prog_state ps = {.last_line = 0};
    qv_progress_init(&ps.line, 0);
    qv_tune_opts o = {
        .strategy = a.strategy, .budget_evals = a.budget_evals,
        .budget_s = a.budget_s, .seed = a.seed, .force = a.force,
        .progress = progress, .progress_user = &ps, .stop = &g_stop,
    };
    qv_device *ref = qv_devlist_find(devs, "ref");
    json_t *arr = a.json ? json_array() : NULL;
    int failures = 0, header = 0, interrupted = 0;
    for (size_t d = 0; d < devs->n && !interrupted; d++) {
        qv_device *dev = devs->dev[d];
        if (a.device ? strcmp(dev->info.id, a.device) != 0 : dev == ref)
            continue;
        for (int ki = 0; qv_kernels[ki] && !interrupted; ki++) {
            const qv_kernel_decl *k = qv_kernels[ki];
            if (a.kernel && strcmp(a.kernel, k->name))
                continue;
            for (int si = 0; si < a.n_shapes && !interrupted; si++) {
                qv_tune_entry e;
                int cached = 0;
                ps.last_line = 0;
                qv_status st = qv_tune_kernel(cache, dev, ref, k, a.shapes[si], &o,
                                              &e, &cached, &interrupted, &err);
                qv_progress_clear(&ps.line);
                if (st) {
                    fprintf(stderr, "qvac tune: %s %s: %s\n", dev->info.id, k->name, err.msg);
                    failures++;
                    continue;
                }
                if (interrupted)
                    break;
                if (arr)
                    json_array_append_new(arr, entry_json(&e, k, dev->info.id));
                else {
                    if (!header++)
                        print_header();
                    print_row(&e, dev->info.id, cached);
                    fflush(stdout);
                }
            }
        }
    }
    if (arr) {
        qv_cli_print_json(arr);
    } else if (header)
        printf("DEFAULT and TUNED in GFLOP/s at the tuning shape (ternary: 2*M*N*K "
               "equivalent); GB/S: the least bytes a launch moves, tuned; cache: %s\n", path);
    qv_devlist_destroy(&devs);
    qv_tune_cache_destroy(&cache);
    if (interrupted) {
        fprintf(stderr, "qvac tune: interrupted; the evaluations so far are saved "
                        "in %s: run the same command again to resume\n", path);
        return 130;
    }
    return failures ? QV_EXIT_FAIL : QV_EXIT_OK;
}
