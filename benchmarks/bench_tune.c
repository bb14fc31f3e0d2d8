/* benchmarks/bench_tune.c — how well the autotuner's search strategies do,
 * and how the tuned kernels compare with CLBlast.
 *
 * For every device (the reference excepted), for ternary_matmul,
 * ternary_matmul_t, f16_matmul and lora_fwd at two shapes (decode: M=1,
 * N=K=2048; batch: M=64, N=K=1024; R=16):
 *   1. the exhaustive search, once, measured for real through qv_tune_kernel
 *      against a benchmark cache (build/bench/tune-bench.db, never the
 *      user's): every evaluation is recorded there, so an interrupted run
 *      resumes without measuring again;
 *   2. the recorded evaluations become a cost table over the space, and the
 *      strategies random, anneal and greedy are replayed over it at budgets
 *      of 5%, 10% and 20% of the space, several seeds each, all starting
 *      from the default configuration as `qvac tune` does: each strategy
 *      sees exactly the same numbers;
 *   3. on every OpenCL device, CLBlast's SGEMM is timed at the same M, N, K
 *      beside our tuned ternary_matmul and f16_matmul.
 * Writes a Markdown report (tables, goals computed from the data).
 *
 * usage: bench_tune [--out FILE] [--device ID] [--kernel NAME] [--seeds N]
 *                   [--quick] [--db PATH] */
#include <CL/cl.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* clblast_c.h declares CLBlastClearCache() without a prototype. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <clblast_c.h>
#pragma GCC diagnostic pop

#include "autotune/cache.h"
#include "autotune/search.h"
#include "autotune/tune.h"
#include "benchmarks/clblast_peer.h"
#include "kernels/backend.h"
#include "kernels/kernel.h"
#include "kernels/opencl/opencl.h"
#include "kernels/verify.h"

#define DEFAULT_DB "build/bench/tune-bench.db"
#define DEFAULT_OUT "benchmarks/reports/autotune.md"
#define N_SHAPES 2
#define N_BUDGETS 3
#define N_STRATS 3
#define CLB_REPS 7

static const char *const bench_kernels[] = {"ternary_matmul", "ternary_matmul_t",
                                            "f16_matmul", "lora_fwd", NULL};
static const char *const shape_names[N_SHAPES] = {"decode", "batch"};
static const qv_shape shapes[N_SHAPES] = {{1, 2048, 2048, 16}, {64, 1024, 1024, 16}};
static const int budget_pct[N_BUDGETS] = {5, 10, 20};
static const char *const strategies[N_STRATS] = {"random", "anneal", "greedy"};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts v). */
static double median(double *v, size_t n)
{
    if (!n)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *out, *device, *kernel, *db;
    int seeds, quick;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_tune [--out FILE] [--device ID] [--kernel NAME] [--seeds N]\n"
        "                  [--quick] [--db PATH]\n\n"
        "Measures the exhaustive autotuning search once per device, kernel and shape\n"
        "(recorded in the benchmark cache, so an interrupted run resumes), replays the\n"
        "random, anneal and greedy strategies over the recorded costs at budgets of\n"
        "5%%, 10%% and 20%% of the space, times CLBlast SGEMM on each OpenCL device,\n"
        "and writes a Markdown report.\n\n"
        "  --out FILE     report (default %s)\n"
        "  --device ID    only this device (default: every device but ref)\n"
        "  --kernel NAME  only this kernel (default: ternary_matmul, ternary_matmul_t,\n"
        "                 f16_matmul, lora_fwd)\n"
        "  --seeds N      seeds per strategy and budget (default 7)\n"
        "  --quick        the decode shape only, for trying it out\n"
        "  --db PATH      benchmark cache (default %s)\n", DEFAULT_OUT, DEFAULT_DB);
}

static int parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->out = DEFAULT_OUT;
    o->db = DEFAULT_DB;
    o->seeds = 7;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick"))
            o->quick = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "bench_tune: unknown or incomplete option '%s'\n", a);
            return -1;
        } else if (!strcmp(a, "--out"))
            o->out = argv[++i];
        else if (!strcmp(a, "--device"))
            o->device = argv[++i];
        else if (!strcmp(a, "--kernel"))
            o->kernel = argv[++i];
        else if (!strcmp(a, "--db"))
            o->db = argv[++i];
        else if (!strcmp(a, "--seeds")) {
            char *end = NULL;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 1000) {
                fprintf(stderr, "bench_tune: --seeds needs an integer in 1..1000\n");
                return -1;
            }
            o->seeds = (int)n;
        } else {
            fprintf(stderr, "bench_tune: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (o->kernel && !qv_kernel_find(o->kernel)) {
        fprintf(stderr, "bench_tune: no kernel named '%s' (see `qvac kernels`)\n",
                o->kernel);
        return -1;
    }
    if (o->device && !strcmp(o->device, "ref")) {
        fprintf(stderr, "bench_tune: the reference device is not tuned\n");
        return -1;
    }
    return 0;
}

/* ---- results ------------------------------------------------------------ */

typedef struct strat_row {
    const char *strategy;
    int pct;
    size_t budget;
    double evals;   /* median over seeds */
    double reached; /* % of the optimum, median over seeds */
    double speedup; /* default / best found, median over seeds */
} strat_row;

typedef struct cell {
    const qv_device *dev;
    const qv_kernel_decl *k;
    int shape;             /* index into shapes[] */
    qv_shape at;           /* the shape it was tuned at */
    char bucket[64];
    int ok;
    char error[512];
    int from_cache;        /* the exhaustive search had been completed before */
    double wall_s;         /* measuring it in this run */
    size_t n_space, n_measured, n_failed;
    long def_idx, opt_idx;
    double def_ns, opt_ns;
    char def_cfg[160], opt_cfg[160];
    strat_row rows[N_STRATS * N_BUDGETS];
} cell;

typedef struct clb_row {
    const qv_device *dev;
    int shape;
    int M, N, K;
    int ok;
    char error[256];
    double span_ns;  /* median device-timeline span of the whole call */
    double main_ns;  /* median of the returned (last) kernel's event */
} clb_row;

typedef struct bench {
    opts o;
    qv_devlist *devs;
    qv_device *ref;
    qv_tune_cache *cache;
    cell *cells;
    size_t n_cells, cap_cells;
    clb_row *clb;
    size_t n_clb, cap_clb;
    double t0;
    char started[64];
} bench;

static int bench_uses_kernel(const bench *b, const char *name)
{
    if (b->o.kernel)
        return !strcmp(b->o.kernel, name);
    for (int i = 0; bench_kernels[i]; i++)
        if (!strcmp(bench_kernels[i], name))
            return 1;
    return 0;
}

static int n_shapes(const bench *b) { return b->o.quick ? 1 : N_SHAPES; }

/* ---- progress ----------------------------------------------------------- */

typedef struct prog {
    const bench *b;
    const char *shape;
    double t_cell;
    int tty;
    size_t last;
} prog;

static int on_progress(void *user, const qv_tune_progress *p)
{
    prog *ps = user;
    double t = now_s();
    if (!ps->tty && p->evals < ps->last + 10 && p->evals != p->budget)
        return 0;
    ps->last = p->evals;
    fprintf(stderr, "%s%s %s %s (%s): %zu/%zu evaluated, %zu failed, best %.3g ms, "
                    "%.0f s (total %.0f s)%s",
            ps->tty ? "\r\033[K" : "", p->device, p->kernel, ps->shape, p->bucket,
            p->evals, p->budget, p->failures,
            isinf(p->best_ns) ? 0.0 : p->best_ns / 1e6, t - ps->t_cell,
            t - ps->b->t0, ps->tty ? "" : "\n");
    return 0;
}

/* ---- replaying the strategies over the recorded costs ------------------ */

static double replay_cost(void *user, size_t idx)
{
    const double *table = user;
    return table[idx];
}

static qv_status replay(const qv_space *space, const double *table, long def_idx,
                        double opt_ns, double def_ns, int seeds, cell *c,
                        qv_err *err)
{
    double *reached = malloc((size_t)seeds * sizeof *reached);
    double *evals = malloc((size_t)seeds * sizeof *evals);
    double *speed = malloc((size_t)seeds * sizeof *speed);
    qv_status st = QV_OK;
    if (!reached || !evals || !speed)
        st = qv_fail(err, QV_ERR_NOMEM, "bench_tune: out of host memory");
    size_t start = def_idx >= 0 ? (size_t)def_idx : 0;
    int r = 0;
    for (int si = 0; si < N_STRATS && !st; si++)
        for (int bi = 0; bi < N_BUDGETS && !st; bi++) {
            strat_row *row = &c->rows[r++];
            row->strategy = strategies[si];
            row->pct = budget_pct[bi];
            row->budget = (space->n * (size_t)budget_pct[bi] + 99) / 100;
            for (int s = 0; s < seeds && !st; s++) {
                qv_search_opts so = {
                    .strategy = strategies[si], .budget_evals = row->budget,
                    .seed = (uint64_t)(s + 1), .start = &start,
                    .n_start = def_idx >= 0 ? 1 : 0,
                };
                qv_search_result sr;
                st = qv_search_run(space, &so, replay_cost, (void *)table, &sr, err);
                if (st)
                    break;
                double best = sr.best >= 0 ? sr.best_cost : INFINITY;
                reached[s] = isfinite(best) ? 100.0 * opt_ns / best : 0.0;
                evals[s] = (double)sr.evals;
                speed[s] = isfinite(best) && isfinite(def_ns) ? def_ns / best : NAN;
            }
            if (!st) {
                row->reached = median(reached, (size_t)seeds);
                row->evals = median(evals, (size_t)seeds);
                row->speedup = isfinite(def_ns) ? median(speed, (size_t)seeds) : NAN;
            }
        }
    free(reached);
    free(evals);
    free(speed);
    return st;
}

/* Builds the cost table of c's key from the benchmark cache and replays the
 * strategies over it. */
static qv_status analyse(bench *b, qv_device *dev, cell *c, qv_err *err)
{
    const qv_kernel_decl *k = c->k;
    qv_tune_key key;
    memset(&key, 0, sizeof key);
    snprintf(key.fingerprint, sizeof key.fingerprint, "%s", dev->info.fingerprint);
    snprintf(key.kernel, sizeof key.kernel, "%s", k->name);
    snprintf(key.bucket, sizeof key.bucket, "%s", c->bucket);
    qv_status st = qv_kernel_source_hash(dev, k, key.src_hash, err);
    if (st)
        return st;
    qv_space *space = NULL;
    if ((st = qv_space_new(k, &dev->info.limits, &space, err)))
        return st;
    qv_tune_eval *ev = NULL;
    size_t n_ev = 0;
    double *table = malloc(space->n * sizeof *table);
    if (!table)
        st = qv_fail(err, QV_ERR_NOMEM, "bench_tune: out of host memory");
    if (!st)
        st = qv_tune_cache_load_evals(b->cache, &key, &ev, &n_ev, err);
    if (!st) {
        for (size_t i = 0; i < space->n; i++)
            table[i] = NAN;
        for (size_t i = 0; i < n_ev; i++) {
            qv_config cfg;
            if (qv_config_parse(k, ev[i].config, &cfg, NULL))
                continue;
            long j = qv_space_find(space, &cfg);
            if (j >= 0)
                table[j] = ev[i].ok ? ev[i].median_ns : INFINITY;
        }
        c->n_space = space->n;
        c->opt_idx = -1;
        for (size_t i = 0; i < space->n; i++) {
            if (isnan(table[i])) {
                table[i] = INFINITY; /* never measured: counts as failed */
                continue;
            }
            c->n_measured++;
            if (isinf(table[i]))
                c->n_failed++;
            else if (c->opt_idx < 0 || table[i] < table[c->opt_idx])
                c->opt_idx = (long)i;
        }
        qv_config def;
        qv_kernel_default_config(k, &def);
        c->def_idx = qv_space_find(space, &def);
        c->def_ns = c->def_idx >= 0 ? table[c->def_idx] : INFINITY;
        qv_config_format(k, &def, c->def_cfg, sizeof c->def_cfg);
        if (c->opt_idx < 0)
            st = qv_fail(err, QV_ERR_DEVICE,
                         "every one of the %zu recorded configurations failed",
                         c->n_measured);
    }
    if (!st) {
        c->opt_ns = table[c->opt_idx];
        qv_config_format(k, &space->cfg[c->opt_idx], c->opt_cfg, sizeof c->opt_cfg);
        st = replay(space, table, c->def_idx, c->opt_ns, c->def_ns, b->o.seeds, c, err);
    }
    free(ev);
    free(table);
    qv_space_destroy(&space);
    return st;
}

static cell *new_cell(bench *b)
{
    if (b->n_cells == b->cap_cells) {
        size_t cap = b->cap_cells ? 2 * b->cap_cells : 16;
        cell *p = realloc(b->cells, cap * sizeof *p);
        if (!p)
            return NULL;
        b->cells = p;
        b->cap_cells = cap;
    }
    cell *c = &b->cells[b->n_cells++];
    memset(c, 0, sizeof *c);
    return c;
}

/* Tunes (or resumes) and analyses one device / kernel / shape. Returns 1
 * when interrupted, -1 when out of memory. */
static int run_cell(bench *b, qv_device *dev, const qv_kernel_decl *k, int si)
{
    cell *c = new_cell(b);
    if (!c)
        return -1;
    c->dev = dev;
    c->k = k;
    c->shape = si;
    c->def_idx = c->opt_idx = -1;
    qv_tune_bucket(k, shapes[si], c->bucket, sizeof c->bucket, &c->at);
    prog ps = {b, shape_names[si], now_s(), isatty(2), 0};
    qv_tune_opts to = {
        .strategy = "exhaustive", .budget_evals = 0, .budget_s = 0, .seed = 1,
        .timing = &qv_timing_default, .progress = on_progress,
        .progress_user = &ps, .stop = &g_stop,
    };
    qv_tune_entry e;
    int interrupted = 0;
    qv_err err;
    qv_err_clear(&err);
    fprintf(stderr, "%s %s %s (%s): exhaustive search...\n", dev->info.id, k->name,
            shape_names[si], c->bucket);
    qv_status st = qv_tune_kernel(b->cache, dev, b->ref, k, shapes[si], &to, &e,
                                  &c->from_cache, &interrupted, &err);
    c->wall_s = now_s() - ps.t_cell;
    if (ps.tty)
        fprintf(stderr, "\r\033[K");
    if (!st && interrupted)
        return 1;
    if (!st)
        st = analyse(b, dev, c, &err);
    if (st) {
        snprintf(c->error, sizeof c->error, "%s", err.msg);
        fprintf(stderr, "bench_tune: %s %s %s: %s\n", dev->info.id, k->name,
                shape_names[si], err.msg);
        return 0;
    }
    c->ok = 1;
    fprintf(stderr, "%s %s %s: %zu configurations (%zu failed)%s, default %.3g ms, "
                    "optimum %.3g ms, %.0f s\n",
            dev->info.id, k->name, shape_names[si], c->n_space, c->n_failed,
            c->from_cache ? ", from the benchmark cache" : "", c->def_ns / 1e6,
            c->opt_ns / 1e6, c->wall_s);
    return 0;
}

/* ---- CLBlast ------------------------------------------------------------ */


static uint64_t ev_time(cl_event e, cl_profiling_info what)
{
    cl_ulong t = 0;
    if (clGetEventProfilingInfo(e, what, sizeof t, &t, NULL) != CL_SUCCESS)
        return 0;
    return (uint64_t)t;
}

/* Times Y(M,N) = X(M,K) . W(N,K)^T with CLBlastSgemm in its own context and
 * profiling queue: one warm-up, then the median of CLB_REPS runs. */
static void clblast_time(const qv_device *dev, clb_row *row)
{
    cl_platform_id plat = NULL;
    cl_device_id d = NULL;
    cl_context ctx = NULL;
    cl_command_queue q = NULL;
    cl_mem bx = NULL, bw = NULL, by = NULL;
    float *host = NULL;
    cl_int rc = CL_SUCCESS;
    const char *what = "";
    size_t M = (size_t)row->M, N = (size_t)row->N, K = (size_t)row->K;
    qv_err why;
    if (qv_opencl_native(dev, &plat, &d, &why)) {
        snprintf(row->error, sizeof row->error, "%.200s", why.msg);
        return;
    }
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    ctx = clCreateContext(props, 1, &d, NULL, NULL, &rc);
    what = "clCreateContext";
    if (rc == CL_SUCCESS) {
        q = clCreateCommandQueue(ctx, d, CL_QUEUE_PROFILING_ENABLE, &rc);
        what = "clCreateCommandQueue";
    }
    size_t nx = M * K, nw = N * K, ny = M * N;
    size_t nmax = nx > nw ? nx : nw;
    if (rc == CL_SUCCESS) {
        host = malloc((nmax > ny ? nmax : ny) * sizeof *host);
        if (!host) {
            snprintf(row->error, sizeof row->error, "out of host memory");
            goto done;
        }
        qv_rng rng = {12345};
        for (size_t i = 0; i < nmax; i++)
            host[i] = qv_rng_uniform(&rng, -1.0f, 1.0f);
        bx = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nx * sizeof(float), host, &rc);
        what = "clCreateBuffer";
    }
    if (rc == CL_SUCCESS)
        bw = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nw * sizeof(float), host, &rc);
    if (rc == CL_SUCCESS) {
        memset(host, 0, ny * sizeof(float));
        by = clCreateBuffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, ny * sizeof(float), host, &rc);
    }
    if (rc != CL_SUCCESS) {
        snprintf(row->error, sizeof row->error, "%s failed (OpenCL error %d)", what, (int)rc);
        goto done;
    }
    double span[CLB_REPS], main_k[CLB_REPS];
    int n_span = 0;
    for (int r = -1; r < CLB_REPS; r++) { /* r = -1: the warm-up */
        cl_event mark = NULL, ev = NULL;
        if ((rc = clFinish(q)) != CL_SUCCESS ||
            (rc = clEnqueueMarkerWithWaitList(q, 0, NULL, &mark)) != CL_SUCCESS) {
            snprintf(row->error, sizeof row->error, "clEnqueueMarker failed (OpenCL error %d)", (int)rc);
            goto done;
        }
        CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                           CLBlastTransposeYes, M, N, K, 1.0f, bx, 0, K,
                                           bw, 0, K, 0.0f, by, 0, N, &q, &ev);
        if (s != CLBlastSuccess) {
            snprintf(row->error, sizeof row->error, "CLBlastSgemm: %s (status %d)",
                     clb_status_name((int)s), (int)s);
            clReleaseEvent(mark);
            if (ev)
                clReleaseEvent(ev);
            goto done;
        }
        rc = clWaitForEvents(1, &ev);
        if (rc == CL_SUCCESS)
            rc = clFinish(q);
        uint64_t m_end = ev_time(mark, CL_PROFILING_COMMAND_END);
        uint64_t k_start = ev_time(ev, CL_PROFILING_COMMAND_START);
        uint64_t k_end = ev_time(ev, CL_PROFILING_COMMAND_END);
        clReleaseEvent(mark);
        clReleaseEvent(ev);
        if (rc != CL_SUCCESS || !k_end || k_end < k_start) {
            snprintf(row->error, sizeof row->error,
                     "CLBlastSgemm: waiting or profiling failed (OpenCL error %d)", (int)rc);
            goto done;
        }
        if (r < 0)
            continue;
        main_k[r] = (double)(k_end - k_start);
        if (m_end && m_end <= k_end) {
            span[n_span++] = (double)(k_end - m_end);
        }
    }
    /* Check the result on a sample of outputs against a host dot product:
     * X is the first M*K values of the input sequence, W the first N*K. */
    {
        float *y = malloc(ny * sizeof *y);
        if (!y) {
            snprintf(row->error, sizeof row->error, "out of host memory");
            goto done;
        }
        rc = clEnqueueReadBuffer(q, by, CL_TRUE, 0, ny * sizeof *y, y, 0, NULL, NULL);
        if (rc != CL_SUCCESS) {
            free(y);
            snprintf(row->error, sizeof row->error,
                     "clEnqueueReadBuffer failed (OpenCL error %d)", (int)rc);
            goto done;
        }
        qv_rng rng = {12345};
        for (size_t i = 0; i < nmax; i++)
            host[i] = qv_rng_uniform(&rng, -1.0f, 1.0f);
        double worst = 0;
        for (size_t t = 0; t < 64; t++) {
            size_t m = t % M, n = (t * 131) % N;
            double dot = 0, mag = 0;
            for (size_t kk = 0; kk < K; kk++) {
                dot += (double)host[m * K + kk] * host[n * K + kk];
                mag += fabs((double)host[m * K + kk] * host[n * K + kk]);
            }
            double e = fabs(y[m * N + n] - dot) / (mag > 0 ? mag : 1);
            if (e > worst)
                worst = e;
        }
        free(y);
        if (!(worst <= 1e-4)) {
            snprintf(row->error, sizeof row->error,
                     "CLBlastSgemm: wrong result (relative error %.3g)", worst);
            goto done;
        }
    }
    row->main_ns = median(main_k, CLB_REPS);
    /* Without usable marker timestamps, the last kernel is all we have. */
    row->span_ns = n_span == CLB_REPS ? median(span, CLB_REPS) : row->main_ns;
    row->ok = 1;
done:
    free(host);
    if (by)
        clReleaseMemObject(by);
    if (bw)
        clReleaseMemObject(bw);
    if (bx)
        clReleaseMemObject(bx);
    if (q)
        clReleaseCommandQueue(q);
    if (ctx)
        clReleaseContext(ctx);
}

static int run_clblast(bench *b, const qv_device *dev)
{
    const qv_kernel_decl *tm = qv_kernel_find("ternary_matmul");
    for (int si = 0; si < n_shapes(b) && !g_stop; si++) {
        if (b->n_clb == b->cap_clb) {
            size_t cap = b->cap_clb ? 2 * b->cap_clb : 8;
            clb_row *p = realloc(b->clb, cap * sizeof *p);
            if (!p)
                return -1;
            b->clb = p;
            b->cap_clb = cap;
        }
        clb_row *row = &b->clb[b->n_clb++];
        memset(row, 0, sizeof *row);
        row->dev = dev;
        row->shape = si;
        qv_shape at = shapes[si];
        char bucket[64];
        if (tm)
            qv_tune_bucket(tm, shapes[si], bucket, sizeof bucket, &at);
        row->M = at.M;
        row->N = at.N;
        row->K = at.K;
        fprintf(stderr, "%s CLBlast SGEMM M=%d N=%d K=%d...\n", dev->info.id,
                row->M, row->N, row->K);
        clblast_time(dev, row);
        if (row->ok)
            fprintf(stderr, "%s CLBlast SGEMM M=%d N=%d K=%d: %.3g ms\n", dev->info.id,
                    row->M, row->N, row->K, row->span_ns / 1e6);
        else
            fprintf(stderr, "%s CLBlast: %s\n", dev->info.id, row->error);
    }
    return 0;
}

/* ---- the report --------------------------------------------------------- */

static void platform_of(const qv_device *dev, char *buf, size_t n)
{
    cl_platform_id p;
    cl_device_id d;
    buf[0] = '\0';
    if (qv_opencl_native(dev, &p, &d, NULL) == QV_OK &&
        clGetPlatformInfo(p, CL_PLATFORM_NAME, n, buf, NULL) != CL_SUCCESS)
        buf[0] = '\0';
    buf[n - 1] = '\0';
}

/* Case-insensitive strstr (strcasestr is a GNU extension). */
static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

static int is_pocl(const qv_device *dev)
{
    char plat[256];
    platform_of(dev, plat, sizeof plat);
    return contains_ci(plat, "Portable Computing Language") || contains_ci(plat, "pocl");
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = '\0';
                snprintf(buf, n, "%s", p);
            }
            break;
        }
    fclose(f);
}

static void fmt_ms(char *buf, size_t n, double ns)
{
    if (isfinite(ns))
        snprintf(buf, n, "%.3f", ns / 1e6);
    else
        snprintf(buf, n, "failed");
}

static void fmt_x(char *buf, size_t n, double x)
{
    if (isfinite(x))
        snprintf(buf, n, "%.2fx", x);
    else
        snprintf(buf, n, "n/a");
}

static const cell *find_cell(const bench *b, const qv_device *dev, const char *kernel,
                             int shape)
{
    for (size_t i = 0; i < b->n_cells; i++)
        if (b->cells[i].dev == dev && b->cells[i].shape == shape &&
            !strcmp(b->cells[i].k->name, kernel))
            return &b->cells[i];
    return NULL;
}

static const strat_row *find_row(const cell *c, const char *strategy, int pct)
{
    for (int i = 0; i < N_STRATS * N_BUDGETS; i++)
        if (c->rows[i].strategy && !strcmp(c->rows[i].strategy, strategy) &&
            c->rows[i].pct == pct)
            return &c->rows[i];
    return NULL;
}

static void shape_label(const cell *c, char *buf, size_t n)
{
    const qv_shape *s = &shapes[c->shape];
    snprintf(buf, n, "%s M=%d N=%d K=%d R=%d → %s", shape_names[c->shape], s->M,
             s->N, s->K, s->R, c->bucket);
}

static void write_machine(const bench *b, FILE *f)
{
    struct utsname u;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    fprintf(f, "## Machine\n\n");
    if (uname(&u) == 0)
        fprintf(f, "Host: %s, %ld logical CPUs, %s %s %s.\n\n", cpu,
                sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine);
    fprintf(f, "| id | name | driver | OpenCL platform | CPU-backed | fingerprint |\n"
               "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < b->devs->n; i++) {
        const qv_device *d = b->devs->dev[i];
        if (d == b->ref || (b->o.device && strcmp(b->o.device, d->info.id)))
            continue;
        char plat[256];
        platform_of(d, plat, sizeof plat);
        fprintf(f, "| %s | %s | %s | %s | %s | `%s` |\n", d->info.id, d->info.name,
                d->info.driver, plat[0] ? plat : "—", d->info.is_cpu ? "yes" : "no",
                d->info.fingerprint);
    }
    fprintf(f, "\n");
}

static void write_strategies(const bench *b, FILE *f)
{
    fprintf(f, "## Strategies against the exhaustive optimum\n\n"
               "The exhaustive search was measured once per device, kernel and shape "
               "(every configuration verified against the reference, then timed with the "
               "device's timer: median of at least %d launches and %.0f ms). The other "
               "strategies were then **replayed** over those recorded measurements: a "
               "strategy asking for a configuration's cost gets the recorded figure, so "
               "every strategy and seed sees exactly the same numbers, and the "
               "comparison is about the search, not about timing noise. Each starts "
               "from the default configuration, as `qvac tune` does. Budgets are "
               "ceil(5%%), ceil(10%%) and ceil(20%%) of the space; *evals* is the median "
               "number of configurations a strategy measured (including the start point); "
               "*%% of optimum* is 100 × optimum time ÷ best time found, and *tuned ÷ "
               "default* is default time ÷ best time found, both medians over %d seeds "
               "(1..%d). `%s` is the default strategy (QV_DEFAULT_STRATEGY).\n\n",
            qv_timing_default.min_reps, qv_timing_default.min_total_ns / 1e6,
            b->o.seeds, b->o.seeds, QV_DEFAULT_STRATEGY);
    fprintf(f, "| device | kernel | shape | strategy | budget | evals | %% of optimum "
               "(median of %d seeds) | tuned ÷ default |\n"
               "|---|---|---|---|---|---|---|---|\n", b->o.seeds);
    for (size_t i = 0; i < b->n_cells; i++) {
        const cell *c = &b->cells[i];
        char shape[160], x[32];
        shape_label(c, shape, sizeof shape);
        if (!c->ok) {
            fprintf(f, "| %s | %s | %s | — | — | — | error: %s | — |\n", c->dev->info.id,
                    c->k->name, shape, c->error);
            continue;
        }
        fmt_x(x, sizeof x, c->def_ns / c->opt_ns);
        fprintf(f, "| %s | %s | %s | exhaustive | 100%% (%zu) | %zu | 100.0 | %s |\n",
                c->dev->info.id, c->k->name, shape, c->n_space, c->n_measured, x);
        for (int r = 0; r < N_STRATS * N_BUDGETS; r++) {
            const strat_row *row = &c->rows[r];
            fmt_x(x, sizeof x, row->speedup);
            fprintf(f, "| %s | %s | %s | %s%s | %d%% (%zu) | %.0f | %.1f | %s |\n",
                    c->dev->info.id, c->k->name, shape, row->strategy,
                    !strcmp(row->strategy, QV_DEFAULT_STRATEGY) ? " (default)" : "",
                    row->pct, row->budget, row->evals, row->reached, x);
        }
    }
    fprintf(f, "\n");
}

static void write_default_vs_opt(const bench *b, FILE *f)
{
    fprintf(f, "## Default configuration against the optimum\n\n"
               "Times in ms at the shape the bucket is tuned at (device timer, median). "
               "*space* is the number of legal configurations on the device; *failed* "
               "those that failed verification, compilation, launch or the timeout.\n\n"
               "| device | kernel | shape | space | failed | default config | default ms "
               "| optimum config | optimum ms | default ÷ optimum | measured in this run |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < b->n_cells; i++) {
        const cell *c = &b->cells[i];
        char shape[160], dms[32], oms[32], x[32], when[64];
        shape_label(c, shape, sizeof shape);
        if (!c->ok) {
            fprintf(f, "| %s | %s | %s | — | — | — | — | — | — | error: %s | — |\n",
                    c->dev->info.id, c->k->name, shape, c->error);
            continue;
        }
        fmt_ms(dms, sizeof dms, c->def_ns);
        fmt_ms(oms, sizeof oms, c->opt_ns);
        fmt_x(x, sizeof x, c->def_ns / c->opt_ns);
        if (c->from_cache)
            snprintf(when, sizeof when, "no (benchmark cache)");
        else
            snprintf(when, sizeof when, "yes (%.0f s)", c->wall_s);
        fprintf(f, "| %s | %s | %s | %zu | %zu | `%s`%s | %s | `%s` | %s | %s | %s |\n",
                c->dev->info.id, c->k->name, shape, c->n_space, c->n_failed,
                c->def_cfg, c->def_idx < 0 ? " (not legal here)" : "", dms, c->opt_cfg,
                oms, x, when);
        if (c->n_measured < c->n_space)
            fprintf(f, "| | | | | | *only %zu of %zu configurations were recorded; the "
                       "rest count as failed* | | | | | |\n", c->n_measured, c->n_space);
    }
    fprintf(f, "\n");
}

static void write_clblast(const bench *b, FILE *f)
{
    fprintf(f, "## CLBlast SGEMM beside the tuned kernels\n\n");
    if (!b->n_clb) {
        fprintf(f, "Not measured in this run (no OpenCL device, or neither "
                   "ternary_matmul nor f16_matmul selected).\n\n");
        return;
    }
    fprintf(f, "CLBlast's `CLBlastSgemm` (row-major, Y(M,N) = X(M,K) · W(N,K)^T, all "
               "float32) in its own context and profiling queue on the same OpenCL "
               "device: one warm-up call, then the median of %d calls (a sample of its "
               "outputs is checked against a host dot product). Its time is the "
               "device-timeline span from a marker enqueued just before the call to the "
               "end of the call's last kernel (covering any helper kernels CLBlast "
               "runs); *main kernel* is the returned event alone. Our figures are the "
               "exhaustive optimum of the tables above (device timer). The ratios are "
               "CLBlast time ÷ our time at the same M, N, K: above 1 means ours is "
               "faster. The batch shape is timed at M=64, the shape its bucket "
               "is tuned at. GFLOP/s counts 2·M·N·K for every kernel (for the ternary "
               "kernel that is the equivalent dense work). At M=1 the product is a "
               "matrix-vector one, for which a GEMM routine is not specialised (CLBlast's "
               "SGEMV would be), so read the decode ratios with that in mind.\n\n"
               "| device | shape (M, N, K) | CLBlast ms | CLBlast main kernel ms | "
               "CLBlast GFLOP/s | tuned ternary_matmul ms | ternary ÷ CLBlast | "
               "tuned f16_matmul ms | f16 ÷ CLBlast |\n"
               "|---|---|---|---|---|---|---|---|---|\n", CLB_REPS);
    for (size_t i = 0; i < b->n_clb; i++) {
        const clb_row *r = &b->clb[i];
        double flops = 2.0 * r->M * r->N * r->K;
        const cell *ct = find_cell(b, r->dev, "ternary_matmul", r->shape);
        const cell *cf = find_cell(b, r->dev, "f16_matmul", r->shape);
        char tms[32] = "—", tx[32] = "—", fms[32] = "—", fx[32] = "—";
        if (ct && ct->ok) {
            fmt_ms(tms, sizeof tms, ct->opt_ns);
            if (r->ok)
                snprintf(tx, sizeof tx, "%.2f", r->span_ns / ct->opt_ns);
        }
        if (cf && cf->ok) {
            fmt_ms(fms, sizeof fms, cf->opt_ns);
            if (r->ok)
                snprintf(fx, sizeof fx, "%.2f", r->span_ns / cf->opt_ns);
        }
        if (r->ok)
            fprintf(f, "| %s | %s (%d, %d, %d) | %.3f | %.3f | %.2f | %s | %s | %s | %s |\n",
                    r->dev->info.id, shape_names[r->shape], r->M, r->N, r->K,
                    r->span_ns / 1e6, r->main_ns / 1e6, flops / r->span_ns, tms, tx,
                    fms, fx);
        else
            fprintf(f, "| %s | %s (%d, %d, %d) | error: %s | — | — | %s | — | %s | — |\n",
                    r->dev->info.id, shape_names[r->shape], r->M, r->N, r->K, r->error,
                    tms, fms);
    }
    fprintf(f, "\n");
}

static void write_goals(const bench *b, FILE *f)
{
    fprintf(f, "## Goals\n\n"
               "**1. The default strategy (`%s`) reaches at least 95%% of the exhaustive "
               "optimum within 15%% of the evaluations.** Judged on the 10%% budget rows "
               "(median over seeds), whose evaluations stay within 15%% of the space; "
               "the 20%% rows are shown for comparison (they exceed the 15%% allowance).\n\n"
               "| device | kernel | shape | evals at 10%% (of space) | %% of optimum at 10%% "
               "| ≥ 95%% within 15%%? | %% of optimum at 20%% |\n"
               "|---|---|---|---|---|---|---|\n", QV_DEFAULT_STRATEGY);
    int pass = 0, total = 0, pass20 = 0;
    for (size_t i = 0; i < b->n_cells; i++) {
        const cell *c = &b->cells[i];
        char shape[160];
        shape_label(c, shape, sizeof shape);
        const strat_row *r10 = c->ok ? find_row(c, QV_DEFAULT_STRATEGY, 10) : NULL;
        const strat_row *r20 = c->ok ? find_row(c, QV_DEFAULT_STRATEGY, 20) : NULL;
        if (!r10 || !r20) {
            fprintf(f, "| %s | %s | %s | — | — | not measured | — |\n", c->dev->info.id,
                    c->k->name, shape);
            continue;
        }
        double frac = 100.0 * r10->evals / (double)c->n_space;
        int ok = r10->reached >= 95.0 && frac <= 15.0;
        total++;
        pass += ok;
        pass20 += r20->reached >= 95.0;
        fprintf(f, "| %s | %s | %s | %.0f (%.1f%%) | %.1f | %s | %.1f |\n",
                c->dev->info.id, c->k->name, shape, r10->evals, frac, r10->reached,
                ok ? "**yes**" : "**no**", r20->reached);
    }
    if (total)
        fprintf(f, "\nMet in %d of %d cases at the 10%% budget; at the 20%% budget, "
                   "%d of %d reach 95%%.\n\n", pass, total, pass20, total);
    else
        fprintf(f, "\nNo case was measured.\n\n");

    fprintf(f, "**2. Tuned ÷ default at least 2x for ternary_matmul on PoCL.** "
               "*Exhaustive* is default ÷ optimum; *%s at 10%%* is the default "
               "strategy's median at the 10%% budget.\n\n", QV_DEFAULT_STRATEGY);
    int any = 0;
    for (size_t i = 0; i < b->n_cells; i++) {
        const cell *c = &b->cells[i];
        if (strcmp(c->k->name, "ternary_matmul") || !is_pocl(c->dev))
            continue;
        if (!any++)
            fprintf(f, "| device | shape | exhaustive | %s at 10%% | ≥ 2x? |\n"
                       "|---|---|---|---|---|\n", QV_DEFAULT_STRATEGY);
        char shape[160], ex[32], gx[32];
        shape_label(c, shape, sizeof shape);
        if (!c->ok) {
            fprintf(f, "| %s | %s | error: %s | — | not measured |\n", c->dev->info.id,
                    shape, c->error);
            continue;
        }
        const strat_row *r10 = find_row(c, QV_DEFAULT_STRATEGY, 10);
        double xe = c->def_ns / c->opt_ns, xg = r10 ? r10->speedup : NAN;
        fmt_x(ex, sizeof ex, xe);
        fmt_x(gx, sizeof gx, xg);
        const char *verdict = !isfinite(xe) ? "n/a (default failed)"
                              : xe < 2.0   ? "**no** (not even exhaustively)"
                              : xg >= 2.0  ? "**yes**"
                                           : "**yes** exhaustively, **no** at 10%";
        fprintf(f, "| %s | %s | %s | %s | %s |\n", c->dev->info.id, shape, ex, gx, verdict);
    }
    if (!any)
        fprintf(f, "Not measured in this run: no PoCL device running ternary_matmul.\n");
    fprintf(f, "\n");
}

static int write_report(const bench *b, double total_s)
{
    size_t n = strlen(b->o.out) + 8;
    char *tmp = malloc(n);
    if (!tmp) {
        fprintf(stderr, "bench_tune: out of host memory\n");
        return -1;
    }
    snprintf(tmp, n, "%s.tmp", b->o.out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "bench_tune: cannot write %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    fprintf(f, "# Autotuner benchmark\n\n"
               "Date: %s. Command: `make bench-tune`", b->started);
    int partial = b->o.quick || b->o.device || b->o.kernel || b->o.seeds != 7;
    if (partial) {
        fprintf(f, " (this report: `bench_tune");
        if (b->o.quick)
            fprintf(f, " --quick");
        if (b->o.device)
            fprintf(f, " --device %s", b->o.device);
        if (b->o.kernel)
            fprintf(f, " --kernel %s", b->o.kernel);
        if (b->o.seeds != 7)
            fprintf(f, " --seeds %d", b->o.seeds);
        fprintf(f, "`, a partial run)");
    }
    fprintf(f, ". Benchmark cache: `%s`. Run time: %.0f s (measurements already in the "
               "cache are not repeated).\n\n", b->o.db, total_s);
    fprintf(f, "All figures were measured side by side in one run on CPU-backed devices "
               "(PoCL, lavapipe) sharing the same host cores, so absolute times say little "
               "about real accelerators: read the ratios (share of the optimum reached, "
               "tuned ÷ default, CLBlast ÷ ours).\n\n"
               "Shapes: *decode* M=1, N=K=2048, R=16; *batch* M=64, N=K=1024, R=16 "
               "(qvac's M=2..127 class, bucket `M64:...`).\n\n");
    write_machine(b, f);
    write_strategies(b, f);
    write_default_vs_opt(b, f);
    write_clblast(b, f);
    write_goals(b, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "bench_tune: writing %s failed\n", tmp);
        remove(tmp);
        free(tmp);
        return -1;
    }
    if (rename(tmp, b->o.out) != 0) {
        fprintf(stderr, "bench_tune: cannot rename %s to %s: %s\n", tmp, b->o.out,
                strerror(errno));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    if (parse_opts(argc, argv, &b.o)) {
        usage(stderr);
        return 2;
    }
    b.t0 = now_s();
    time_t t = time(NULL);
    struct tm tm;
    if (localtime_r(&t, &tm))
        strftime(b.started, sizeof b.started, "%Y-%m-%d %H:%M %Z", &tm);
    qv_err err;
    qv_err_clear(&err);
    if (qv_devlist_open(&b.devs, &err)) {
        fprintf(stderr, "bench_tune: %s\n", err.msg);
        return 1;
    }
    b.ref = qv_devlist_find(b.devs, "ref");
    if (b.o.device && !qv_devlist_find(b.devs, b.o.device)) {
        fprintf(stderr, "bench_tune: no device '%s'; `qvac devices` lists them\n", b.o.device);
        qv_devlist_destroy(&b.devs);
        return 2;
    }
    if (!b.ref) {
        fprintf(stderr, "bench_tune: no reference device\n");
        qv_devlist_destroy(&b.devs);
        return 1;
    }
    if (qv_tune_cache_open(b.o.db, 0, 2000, &b.cache, &err)) {
        fprintf(stderr, "bench_tune: %s\n", err.msg);
        qv_devlist_destroy(&b.devs);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int rc = 0, interrupted = 0, errors = 0;
    for (size_t d = 0; d < b.devs->n && !interrupted && !rc; d++) {
        qv_device *dev = b.devs->dev[d];
        if (dev == b.ref || (b.o.device && strcmp(b.o.device, dev->info.id)))
            continue;
        for (int ki = 0; qv_kernels[ki] && !interrupted && !rc; ki++) {
            const qv_kernel_decl *k = qv_kernels[ki];
            if (!bench_uses_kernel(&b, k->name))
                continue;
            for (int si = 0; si < n_shapes(&b) && !interrupted && !rc; si++) {
                int r = run_cell(&b, dev, k, si);
                if (r > 0)
                    interrupted = 1;
                else if (r < 0)
                    rc = 1;
                else
                    errors += !b.cells[b.n_cells - 1].ok;
            }
        }
        if (!interrupted && !rc && !strcmp(dev->info.backend, "opencl") &&
            (bench_uses_kernel(&b, "ternary_matmul") || bench_uses_kernel(&b, "f16_matmul")))
            rc = run_clblast(&b, dev) ? 1 : 0;
        interrupted |= g_stop != 0;
    }
    if (rc)
        fprintf(stderr, "bench_tune: out of host memory\n");
    else if (interrupted)
        fprintf(stderr, "bench_tune: interrupted; the measurements so far are saved in "
                        "%s: run the same command again to resume (no report written)\n",
                b.o.db);
    else if (write_report(&b, now_s() - b.t0))
        rc = 1;
    else
        fprintf(stderr, "bench_tune: wrote %s (%.0f s)%s\n", b.o.out, now_s() - b.t0,
                errors ? "; some cases failed, see the report" : "");
    CLBlastClearCache();
    free(b.cells);
    free(b.clb);
    qv_tune_cache_destroy(&b.cache);
    qv_devlist_destroy(&b.devs);
    if (interrupted)
        return 130;
    return rc ? 1 : errors ? 1 : 0;
}
