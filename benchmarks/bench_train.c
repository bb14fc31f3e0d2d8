/* benchmarks/bench_train.c — LoRA fine-tuning with ternary weights against
 * the same fine-tune with 16-bit weights, and the kernels under it beside
 * ggml's CPU kernels: one run writes the Markdown report, training.json
 * (every figure of the report) and two SVG bar charts, nothing typed by
 * hand (benchmarks/README.md, issue 12).
 *
 * 1. Peers: benchmarks/peer_ggml.sh times ggml's CPU mul_mat at the kernel
 *    table's shapes when a llama.cpp / ggml source tree is given (--peer or
 *    QVAC_PEER_GGML), and ggml's Vulkan mul_mat (peer_ggml.sh --backend
 *    vulkan) at the Vulkan devices' shapes; else the report says it was
 *    skipped. After qvac's kernels, CLBlast's SGEMM (and HGEMM where the
 *    device has cl_khr_fp16) at the OpenCL devices' 16-bit and f32 shapes
 *    (benchmarks/clblast_peer.c): the same-API 16-bit baselines of issue 12.
 * 2. Kernels, per device: ternary_matmul (+ quantize_act's time), f16_matmul,
 *    f32_matmul, ternary_matmul_t, f16_matmul_t at 512x2048x2048, M=1 and
 *    every selected model's BitLinear shapes, each tuned first (small
 *    budget, cached in --tune-db) and timed in its tuned configuration.
 * 3. Training, per model (built-in, ~700M, ~1.3B, ~3B shapes) and device
 *    (every one but ref), ternary then f16: qv_train_tune at the model's
 *    shapes (time recorded), then 1 warm-up step and up to --steps - 1
 *    steady-state steps; steady tokens/s from the per-step progress
 *    timestamps, MFU against qv_gemm_peak (train/mfu.h), peak memory by
 *    category.
 * A hard budget (--budget-minutes) bounds the whole run: a run predicted
 * (from the seconds per FLOP of earlier runs on the device) not to fit is
 * skipped, a running one is cut after the steps that fit, and the report
 * says so. Files are rewritten atomically after every run.
 *
 * usage: bench_train [options]; see usage(). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autotune/cache.h"
#include "benchmarks/clblast_peer.h"
#include "autotune/tune.h"
#include "common/file.h"
#include "formats/dataset.h"
#include "kernels/backend.h"
#include "kernels/ternary.h"
#include "kernels/verify.h"
#include "train/mfu.h"
#include "train/model.h"
#include "train/net.h"
#include "train/train.h"

#define DEFAULT_OUT "benchmarks/reports/training.md"
#define DEFAULT_DB "build/bench/train-tune.db"
#define BUILTIN_PATH "data/model/qvac-tiny.gguf"
#define MAX_DEVS 8
#define MAX_STEPS 64
#define MAX_KROWS 512
#define MAX_PEER 256

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- models ------------------------------------------------------------- */

typedef struct bench_model {
    const char *key, *label, *like;
    qv_model_config cfg;
    int batch, seq;       /* OpenCL and others */
    int vk_batch, vk_seq; /* Vulkan (lavapipe is slower on CPUs) */
    int ckpt;             /* --checkpoint-activations in both runs (the
                             memory-bound shapes: it pays where activations
                             outweigh the ternary weights) */
    int mem_only;         /* a memory probe: 2 steps, no kernel-table rows, on the
                             first device only (peak bytes are the same buffers
                             on every device) */
    int steps, vk_steps;  /* optimizer steps a run (0: --steps, default 6); fewer
                             at the shapes that would not fit the budget */
} bench_model;

#define BITNET_CFG(D, L, H, F)                                                 \
    {.vocab = 32002, .dim = (D), .n_layers = (L), .n_heads = (H),             \
     .n_kv_heads = (H), .ffn_dim = (F), .ctx = 2048, .rope_theta = 10000.0f,  \
     .norm_eps = 1e-5f, .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1}

static const bench_model models[] = {
    {"builtin", "built-in", "qvac-tiny (" BUILTIN_PATH ")",
     {.vocab = 258, .dim = 256, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
      .ffn_dim = 512, .ctx = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
      .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0},
     4, 128, 4, 128, 0, 0, 0, 0},
    {"700m", "~700M", "1bitLLM/bitnet_b1_58-large", BITNET_CFG(1536, 24, 16, 4096),
     4, 256, 1, 64, 0, 0, 0, 4},
    {"1.3b", "~1.3B", "1bitLLM/bitnet_b1_58-xl", BITNET_CFG(2048, 24, 32, 5460),
     2, 128, 1, 32, 1, 0, 0, 4},
    /* the ~1.3B shape at the smallest fine-tune batch, for peak memory: the
     * ternary / f16 gap is widest where activations are smallest */
    {"1.3b-mem", "~1.3B (memory, 1 x 64)", "1bitLLM/bitnet_b1_58-xl",
     BITNET_CFG(2048, 24, 32, 5460), 1, 64, 1, 64, 1, 1, 2, 2},
    {"3b", "~3B", "1bitLLM/bitnet_b1_58-3B", BITNET_CFG(3200, 26, 32, 8640),
     1, 128, 1, 16, 1, 0, 4, 3},
};
#define N_MODELS ((int)(sizeof models / sizeof models[0]))

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *out, *devices, *models, *targets, *db, *peer;
    int steps, steps_set, rank, batch, seq, tune_evals, kernels, clblast;
    double budget_min;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_train [--out FILE] [--devices LIST] [--models LIST]\n"
        "                   [--steps N] [--batch B] [--seq S] [--rank R] [--targets LIST]\n"
        "                   [--tune-evals N] [--tune-db PATH] [--peer SRC]\n"
        "                   [--kernels 0|1] [--clblast 0|1] [--budget-minutes M]\n\n"
        "LoRA fine-tunes with ternary and with f16 base weights, one after the other,\n"
        "per model and device, plus the kernel table beside ggml's CPU kernels; writes\n"
        "FILE (Markdown), FILE's .json and two SVG charts (FILE-tokens.svg,\n"
        "FILE-memory.svg, without .md).\n\n"
        "  --out FILE          report (default %s)\n"
        "  --devices LIST      device ids, comma-separated (default: every device but ref)\n"
        "  --models LIST       of builtin,700m,1.3b,3b,1.3b-mem (default: all;\n"
        "                      1.3b-mem: the ~1.3B shape at 1 x 64 tokens, 2 steps,\n"
        "                      for the peak-memory goal)\n"
        "  --steps N           optimizer steps of every run: 1 warm-up + N-1 measured\n"
        "                      (default 6; 4 at ~3B, and on Vulkan 4 at ~700M and\n"
        "                      ~1.3B, 3 at ~3B)\n"
        "  --batch B, --seq S  override every model's batch x seq (defaults per model\n"
        "                      and backend: builtin 4x128, 700m 4x256, 1.3b 2x128,\n"
        "                      3b 1x128; on Vulkan 700m 1x64, 1.3b 1x32, 3b 1x16)\n"
        "  --rank R            LoRA rank (default 16)\n"
        "  --targets LIST      LoRA targets (default q,v: the default of finetune)\n"
        "  --tune-evals N      configurations per kernel and shape when tuning (4)\n"
        "  --tune-db PATH      autotune cache (default %s)\n"
        "  --peer SRC          llama.cpp or ggml source tree for the ggml CPU line and,\n"
        "                      on Vulkan devices, the ggml-vulkan line (default\n"
        "                      $QVAC_PEER_GGML; none: skipped, and said)\n"
        "  --kernels 0         no kernel table\n"
        "  --clblast 0         no CLBlast line on OpenCL devices\n"
        "  --budget-minutes M  hard budget for everything (default 45)\n",
        DEFAULT_OUT, DEFAULT_DB);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->out = DEFAULT_OUT;
    o->targets = "q,v";
    o->db = DEFAULT_DB;
    o->peer = getenv("QVAC_PEER_GGML");
    if (o->peer && !*o->peer)
        o->peer = NULL;
    o->steps = 6;
    o->rank = 16;
    o->tune_evals = 4;
    o->kernels = 1;
    o->clblast = 1;
    o->budget_min = 45;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "bench_train: unknown or incomplete option '%s'\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--devices")) o->devices = v;
        else if (!strcmp(a, "--models")) o->models = v;
        else if (!strcmp(a, "--targets")) o->targets = v;
        else if (!strcmp(a, "--tune-db")) o->db = v;
        else if (!strcmp(a, "--peer")) o->peer = *v ? v : NULL;
        else if (!strcmp(a, "--steps")) bad = parse_int(v, 1, MAX_STEPS, &o->steps), o->steps_set = 1;
        else if (!strcmp(a, "--batch")) bad = parse_int(v, 1, 64, &o->batch);
        else if (!strcmp(a, "--seq")) bad = parse_int(v, 2, 2048, &o->seq);
        else if (!strcmp(a, "--rank")) bad = parse_int(v, 1, 128, &o->rank);
        else if (!strcmp(a, "--tune-evals")) bad = parse_int(v, 1, 1000, &o->tune_evals);
        else if (!strcmp(a, "--kernels")) bad = parse_int(v, 0, 1, &o->kernels);
        else if (!strcmp(a, "--clblast")) bad = parse_int(v, 0, 1, &o->clblast);
        else if (!strcmp(a, "--budget-minutes")) {
            char *end = NULL;
            o->budget_min = strtod(v, &end);
            bad = *end || !(o->budget_min > 0);
        } else {
            fprintf(stderr, "bench_train: unknown option '%s'\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "bench_train: %s: '%s' is out of range (see --help)\n", a, v);
            return -1;
        }
    }
    if (o->peer && strchr(o->peer, '\'')) {
        fprintf(stderr, "bench_train: --peer: a path with a quote is not supported\n");
        return -1;
    }
    return 0;
}

static int in_list(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return 1;
        if (!c)
            break;
        p = c + 1;
    }
    return 0;
}

/* ---- records ------------------------------------------------------------ */

enum { RUN_NOT_RUN = 0, RUN_DONE, RUN_CUT, RUN_SKIPPED, RUN_FAILED };

typedef struct run_rec {
    int state;
    char note[600];
    int batch, seq, steps_req;
    qv_train_result r;
    double step_end[MAX_STEPS + 1]; /* elapsed training time at each step end */
    int n_steps;                    /* steps recorded */
    double tps_steady, steady_s;    /* over steps 2..n */
    int steady_steps;
    double step_flops, gemm_gflops, mfu;
    qv_train_tune_result tune;
    double wall_s;
} run_rec;

typedef struct model_rec {
    int selected, state;
    char note[600];
    const char *source;
    qv_model_config cfg;
    uint64_t ternary_params, other_params;
    run_rec run[MAX_DEVS][2];
} model_rec;

typedef struct krow {
    char device[32], kernel[32], origin[16];
    int m, n, k;
    double gflops;   /* NAN: failed */
    int tuned;
    char note[160];
    char peer_type[8];
    double peer_gflops; /* NAN: not measured */
    /* the same-API peer: CLBlast on OpenCL rows, ggml-vulkan on Vulkan rows */
    double clb_sgemm, clb_hgemm; /* GFLOP/s; NAN: not measured */
    char clb_note[160];
    double vk_gflops;            /* ggml-vulkan, of type peer_type; NAN: none */
    char vk_note[96];
} krow;

typedef struct peer_rec {
    char type[8];
    int m, n, k;
    double gflops;
    int vk;          /* 0: ggml-cpu; 1: ggml-vulkan */
    char dev[32];    /* ggml-vulkan: the qvac device id it ran for */
    int unsupported; /* ggml-vulkan: "supported":false */
} peer_rec;

typedef struct bench {
    opts o;
    char cmdline[2048], started[64];
    qv_device *devs[MAX_DEVS];
    int nd;
    qv_device *ref;
    model_rec mr[N_MODELS];
    krow kr[MAX_KROWS];
    int nk;
    peer_rec peer[MAX_PEER];
    int np;
    char peer_note[600];
    char vk_note[800];  /* ggml-vulkan line */
    char clb_note[800]; /* CLBlast line */
    double t0, deadline;
    double phase_s[5];       /* ggml CPU, ggml-vulkan, kernel table, CLBlast, models */
    double spf[MAX_DEVS][2]; /* seconds per model FLOP of a steady step */
    char notes[4096];        /* budget notes for the report */
    char base[4096];         /* out path without .md */
} bench;

static void note(bench *b, const char *fmt, ...)
{
    size_t len = strlen(b->notes);
    va_list ap;
    va_start(ap, fmt);
    if (len + 4 < sizeof b->notes) {
        b->notes[len++] = '-';
        b->notes[len++] = ' ';
        vsnprintf(b->notes + len, sizeof b->notes - len - 1, fmt, ap);
        len = strlen(b->notes);
        if (len + 1 < sizeof b->notes) {
            b->notes[len] = '\n';
            b->notes[len + 1] = 0;
        }
    }
    va_end(ap);
}

static double left_s(const bench *b) { return b->deadline - now_s(); }

static void run_shape(const bench *b, int mi, const qv_device *d, int *batch, int *seq)
{
    int vk = !strcmp(d->info.backend, "vulkan");
    *batch = b->o.batch ? b->o.batch : vk ? models[mi].vk_batch : models[mi].batch;
    *seq = b->o.seq ? b->o.seq : vk ? models[mi].vk_seq : models[mi].seq;
}

/* Optimizer steps of model mi's runs on d: --steps where given, else the
 * model's own count for the backend, else the default. */
static int run_steps(const bench *b, int mi, const qv_device *d)
{
    int vk = !strcmp(d->info.backend, "vulkan");
    int n = vk ? models[mi].vk_steps : models[mi].steps;
    if (b->o.steps_set || !n)
        n = b->o.steps;
    return models[mi].mem_only && n > 2 ? 2 : n;
}

/* ---- peer (ggml CPU) ----------------------------------------------------- */

static const char *peer_type_of(const char *kernel, int m, int n, int k, int *pm,
                                int *pn, int *pk)
{
    int t = strstr(kernel, "_t") != NULL; /* dX = dY . W: ggml at (M, K, N) */
    *pm = m;
    *pn = t ? k : n;
    *pk = t ? n : k;
    if (!strncmp(kernel, "ternary", 7))
        return *pk % 256 ? NULL : "tq2_0"; /* TQ2_0 needs K % 256 == 0 */
    if (!strncmp(kernel, "f16", 3))
        return "f16";
    return "f32";
}

static const peer_rec *peer_get(const bench *b, int vk, const char *dev, const char *type,
                                 int m, int n, int k)
{
    for (int i = 0; i < b->np; i++)
        if (b->peer[i].vk == vk && (!vk || !strcmp(b->peer[i].dev, dev)) &&
            !strcmp(b->peer[i].type, type) && b->peer[i].m == m &&
            b->peer[i].n == n && b->peer[i].k == k)
            return &b->peer[i];
    return NULL;
}

static double peer_find(const bench *b, const char *type, int m, int n, int k)
{
    const peer_rec *r = peer_get(b, 0, NULL, type, m, n, k);
    return r ? r->gflops : NAN;
}

/* Reads peer_ggml's JSON lines into b->peer; the count read. */
static int read_peer_lines(bench *b, FILE *p, int vk, const char *dev)
{
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *t = j ? json_string_value(json_object_get(j, "type")) : NULL;
        if (t && b->np < MAX_PEER) {
            peer_rec *r = &b->peer[b->np++];
            memset(r, 0, sizeof *r);
            snprintf(r->type, sizeof r->type, "%s", t);
            r->m = (int)json_integer_value(json_object_get(j, "m"));
            r->n = (int)json_integer_value(json_object_get(j, "n"));
            r->k = (int)json_integer_value(json_object_get(j, "k"));
            json_t *g = json_object_get(j, "gflops");
            r->gflops = g ? json_number_value(g) : NAN;
            r->vk = vk;
            snprintf(r->dev, sizeof r->dev, "%s", dev ? dev : "");
            r->unsupported = json_is_false(json_object_get(j, "supported"));
            if (vk && !b->vk_note[0]) {
                const char *name = json_string_value(json_object_get(j, "device"));
                snprintf(b->vk_note, sizeof b->vk_note, "%s", name ? name : "");
            }
            got++;
        }
        json_decref(j);
    }
    return got;
}

/* Runs peer_ggml.sh for every case of the kernel table. Where it dies part
 * way (a crash of ggml at one shape must not cost the others), it runs again
 * for the cases not answered, without the one it died on, up to 3 times. */
static void run_peer(bench *b)
{
    if (!b->o.peer) {
        snprintf(b->peer_note, sizeof b->peer_note,
                 "skipped: no llama.cpp / ggml source tree given (--peer SRC or "
                 "QVAC_PEER_GGML=SRC)");
        return;
    }
    enum { MAX_CASES = 256 };
    static char spec[MAX_CASES][48];
    static int lost[MAX_CASES];
    int cases = 0;
    for (int i = 0; i < b->nk && cases < MAX_CASES; i++) {
        int m, n, k, dup = 0;
        const char *t = peer_type_of(b->kr[i].kernel, b->kr[i].m, b->kr[i].n,
                                     b->kr[i].k, &m, &n, &k);
        if (!t)
            continue;
        snprintf(spec[cases], sizeof spec[cases], "%s:%d,%d,%d", t, m, n, k);
        for (int j = 0; j < cases && !dup; j++)
            dup = !strcmp(spec[j], spec[cases]);
        lost[cases] = 0;
        cases += !dup;
    }
    fprintf(stderr, "peer: %d ggml cases (%s)\n", cases, b->o.peer);
    double t0 = now_s();
    char *cmd = malloc(65536);
    if (!cmd || !cases) {
        free(cmd);
        snprintf(b->peer_note, sizeof b->peer_note, cmd ? "no case for ggml" :
                 "failed: out of memory");
        return;
    }
    int rc = 0, tries = 0;
    char why[160] = "";
    for (;;) {
        size_t len = (size_t)snprintf(cmd, 65536, "benchmarks/peer_ggml.sh '%s' --min-ms 300",
                                      b->o.peer);
        int todo = 0, first = -1;
        for (int c = 0; c < cases; c++) {
            char t[8];
            int m, n, k;
            if (lost[c] || sscanf(spec[c], "%7[^:]:%d,%d,%d", t, &m, &n, &k) != 4 ||
                peer_get(b, 0, NULL, t, m, n, k) || len + strlen(spec[c]) + 2 >= 65536)
                continue;
            len += (size_t)snprintf(cmd + len, 65536 - len, " %s", spec[c]);
            todo++;
            if (first < 0)
                first = c;
        }
        if (!todo || tries == 3)
            break;
        if (rc && first >= 0) { /* the case it died on: the first not answered */
            lost[first] = 1;
            fprintf(stderr, "peer: ggml died at %s; running the other %d again\n",
                    spec[first], todo - 1);
            if (todo == 1)
                break;
            rc = 0;
            continue;
        }
        tries++;
        FILE *p = popen(cmd, "r");
        if (!p) {
            snprintf(why, sizeof why, "cannot run benchmarks/peer_ggml.sh");
            break;
        }
        read_peer_lines(b, p, 0, NULL);
        rc = pclose(p);
        if (!rc)
            break;
        snprintf(why, sizeof why, "%s %d", WIFSIGNALED(rc) ? "killed by signal" :
                 "exit status", WIFSIGNALED(rc) ? WTERMSIG(rc) : WEXITSTATUS(rc));
    }
    free(cmd);
    int got = 0;
    for (int i = 0; i < b->np; i++)
        got += !b->peer[i].vk;
    size_t pl = (size_t)snprintf(b->peer_note, sizeof b->peer_note,
                                 "ggml's CPU mul_mat from %s, built by "
                                 "benchmarks/peer_ggml.sh, %ld threads, %d of %d cases "
                                 "in %.0f s", b->o.peer, sysconf(_SC_NPROCESSORS_ONLN),
                                 got, cases, now_s() - t0);
    if (got < cases && pl < sizeof b->peer_note)
        pl += (size_t)snprintf(b->peer_note + pl, sizeof b->peer_note - pl,
                               "; the script failed (%s)", why[0] ? why : "?");
    for (int c = 0, n = 0; c < cases && pl < sizeof b->peer_note; c++)
        if (lost[c])
            pl += (size_t)snprintf(b->peer_note + pl, sizeof b->peer_note - pl,
                                   "%s%s", n++ ? ", " : "; ggml died at (no peer "
                                   "figure): ", spec[c]);
    for (int i = 0; i < b->nk; i++) {
        int m, n, k;
        const char *t = peer_type_of(b->kr[i].kernel, b->kr[i].m, b->kr[i].n,
                                     b->kr[i].k, &m, &n, &k);
        if (t) {
            snprintf(b->kr[i].peer_type, sizeof b->kr[i].peer_type, "%s", t);
            b->kr[i].peer_gflops = peer_find(b, t, m, n, k);
        }
    }
}


/* The ggml-vulkan line: peer_ggml.sh --backend vulkan, once per Vulkan
 * device, at that device's f16 and f32 rows (and one TQ2_0 case, to say
 * whether ggml-vulkan multiplies TQ2_0 at all). The first build of
 * ggml-vulkan compiles a few hundred shaders (about 5 minutes on 2
 * cores), so the call is bounded by a share of the budget. */
static void run_peer_vk(bench *b)
{
    char summary[800] = "";
    size_t sl = 0;
    int any = 0;
    for (int d = 0; d < b->nd; d++) {
        const qv_device *dev = b->devs[d];
        if (strcmp(dev->info.backend, "vulkan"))
            continue;
        any = 1;
        const char *colon = strchr(dev->info.id, ':');
        int ord = colon ? atoi(colon + 1) : 0;
        if (!b->o.peer) {
            snprintf(summary, sizeof summary, "skipped: no llama.cpp / ggml source tree "
                     "given (--peer SRC or QVAC_PEER_GGML=SRC)");
            break;
        }
        int limit = (int)(b->o.budget_min * 60.0 * 0.15);
        limit = limit < 120 ? 120 : limit;
        char *cmd = malloc(65536);
        if (!cmd)
            return;
        size_t len = (size_t)snprintf(cmd, 65536, "timeout -k 10 %d benchmarks/peer_ggml.sh "
                                      "--backend vulkan --device %d '%s' --min-ms 300 "
                                      "tq2_0:512,2048,2048", limit, ord, b->o.peer);
        int cases = 1;
        for (int i = 0; i < b->nk; i++) {
            int m, n, k;
            if (strcmp(b->kr[i].device, dev->info.id))
                continue;
            const char *t = peer_type_of(b->kr[i].kernel, b->kr[i].m, b->kr[i].n,
                                         b->kr[i].k, &m, &n, &k);
            if (!t || !strcmp(t, "tq2_0"))
                continue;
            char spec[64];
            snprintf(spec, sizeof spec, " %s:%d,%d,%d", t, m, n, k);
            if (strstr(cmd, spec) || len + strlen(spec) + 1 >= 65536)
                continue;
            memcpy(cmd + len, spec, strlen(spec) + 1);
            len += strlen(spec);
            cases++;
        }
        fprintf(stderr, "peer: %d ggml-vulkan cases on %s (%s)\n", cases, dev->info.id,
                b->o.peer);
        double t0 = now_s();
        b->vk_note[0] = 0;
        FILE *p = popen(cmd, "r");
        free(cmd);
        int got = p ? read_peer_lines(b, p, 1, dev->info.id) : 0;
        int rc = p ? pclose(p) : -1;
        char name[256];
        snprintf(name, sizeof name, "%s", b->vk_note);
        int exit_code = rc >= 0 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        const peer_rec *tq = peer_get(b, 1, dev->info.id, "tq2_0", 512, 2048, 2048);
        if (!p)
            sl += (size_t)snprintf(summary + sl, sizeof summary - sl, "%s: cannot run "
                                   "benchmarks/peer_ggml.sh; ", dev->info.id);
        else if (exit_code == 124 || exit_code == 137)
            sl += (size_t)snprintf(summary + sl, sizeof summary - sl, "%s: "
                                   "benchmarks/peer_ggml.sh --backend vulkan ran past its "
                                   "%d s share of the budget after %d of %d cases (the "
                                   "first build of ggml-vulkan compiles its shaders: run "
                                   "the script once beforehand); ", dev->info.id, limit,
                                   got, cases);
        else if (rc)
            sl += (size_t)snprintf(summary + sl, sizeof summary - sl, "%s: "
                                   "benchmarks/peer_ggml.sh --backend vulkan exited with "
                                   "status %d after %d of %d cases (its stderr says why); ",
                                   dev->info.id, exit_code, got, cases);
        else
            sl += (size_t)snprintf(summary + sl, sizeof summary - sl, "%s: ggml-vulkan's "
                                   "mul_mat on %s, %d cases in %.0f s%s; ", dev->info.id,
                                   name[0] ? name : "?", got, now_s() - t0,
                                   tq && tq->unsupported ? ", TQ2_0 not supported by "
                                   "ggml-vulkan (no ternary line)" : "");
        if (sl >= sizeof summary)
            sl = sizeof summary - 1;
        for (int i = 0; i < b->nk; i++) {
            krow *r = &b->kr[i];
            int m, n, k;
            if (strcmp(r->device, dev->info.id))
                continue;
            const char *t = peer_type_of(r->kernel, r->m, r->n, r->k, &m, &n, &k);
            const peer_rec *pr = t ? peer_get(b, 1, dev->info.id, t, m, n, k) : NULL;
            if (!t && !strncmp(r->kernel, "ternary", 7))
                snprintf(r->vk_note, sizeof r->vk_note, "ggml-vulkan: no TQ2_0 case (K %% 256)");
            else if (pr && pr->unsupported)
                snprintf(r->vk_note, sizeof r->vk_note, "ggml-vulkan: %s not supported", t);
            else if (t && !strcmp(t, "tq2_0") && tq && tq->unsupported)
                snprintf(r->vk_note, sizeof r->vk_note, "ggml-vulkan: tq2_0 not supported");
            else if (pr)
                r->vk_gflops = pr->gflops;
        }
    }
    if (!any)
        snprintf(summary, sizeof summary, "no Vulkan device in this run");
    snprintf(b->vk_note, sizeof b->vk_note, "%s", summary);
    size_t n = strlen(b->vk_note);
    if (n >= 2 && !strcmp(b->vk_note + n - 2, "; "))
        b->vk_note[n - 2] = 0;
}

/* ---- CLBlast (OpenCL devices) ------------------------------------------- */

/* The CLBlast GEMM of a kernel-table row: 0 when the row has none. */
static int clb_layout(const krow *r, int *ta, int *tb, int *M, int *N, int *K)
{
    *M = r->m;
    if (!strcmp(r->kernel, "f16_matmul")) { /* Y(M,N) = X(M,K) . W(N,K)^T */
        *ta = 0, *tb = 1, *N = r->n, *K = r->k;
        return 1;
    }
    if (!strcmp(r->kernel, "f16_matmul_t")) { /* dX(M,K) = dY(M,N) . W(N,K) */
        *ta = 0, *tb = 0, *N = r->k, *K = r->n;
        return 1;
    }
    if (!strcmp(r->kernel, "f32_matmul")) { /* as timed: kernel.c's f32_example */
        *ta = r->n & 1, *tb = r->k & 1, *N = r->n, *K = r->k;
        return 1;
    }
    return 0;
}

typedef struct clb_case {
    int half, ta, tb, M, N, K;
    double gflops;
    char why[160];
} clb_case;

static void run_clblast(bench *b, double limit_s)
{
    if (!b->o.clblast) {
        snprintf(b->clb_note, sizeof b->clb_note, "not run (--clblast 0)");
        return;
    }
    clb_case *cases = calloc(MAX_KROWS * 2, sizeof *cases);
    if (!cases)
        return;
    char summary[800] = "";
    size_t sl = 0;
    int any = 0;
    double t0 = now_s();
    for (int d = 0; d < b->nd && !g_stop; d++) {
        const qv_device *dev = b->devs[d];
        if (strcmp(dev->info.backend, "opencl"))
            continue;
        any = 1;
        int nc = 0, timed = 0, cut = 0;
        double td = now_s();
        clb_peer *p = NULL;
        char why[200] = "";
        if (clb_peer_open(dev, &p, why, sizeof why)) {
            sl += (size_t)snprintf(summary + sl, sizeof summary - sl, "%s: %s; ",
                                   dev->info.id, why);
            if (sl >= sizeof summary)
                sl = sizeof summary - 1;
            continue;
        }
        int fp16 = clb_peer_has_fp16(p);
        fprintf(stderr, "clblast: %s (%s)%s\n", dev->info.id, clb_peer_device_name(p),
                fp16 ? "" : ", no cl_khr_fp16: SGEMM only");
        for (int i = 0; i < b->nk && !g_stop; i++) {
            krow *r = &b->kr[i];
            int ta, tb, M, N, K;
            if (strcmp(r->device, dev->info.id) || !clb_layout(r, &ta, &tb, &M, &N, &K))
                continue;
            for (int half = 0; half < 2; half++) {
                if (half && (!fp16 || !strcmp(r->kernel, "f32_matmul")))
                    continue;
                clb_case *c = NULL;
                for (int j = 0; j < nc && !c; j++)
                    if (cases[j].half == half && cases[j].ta == ta && cases[j].tb == tb &&
                        cases[j].M == M && cases[j].N == N && cases[j].K == K)
                        c = &cases[j];
                if (!c && nc < MAX_KROWS * 2) {
                    c = &cases[nc++];
                    *c = (clb_case){half, ta, tb, M, N, K, NAN, ""};
                    if (now_s() - t0 > limit_s || left_s(b) < 120) {
                        snprintf(c->why, sizeof c->why, "not measured: CLBlast's share "
                                 "of the budget (%.0f s) was spent", limit_s);
                        cut++;
                    } else {
                        double ms = NAN;
                        if (clb_peer_time(p, half, ta, tb, M, N, K, 2.0, &ms, c->why,
                                          sizeof c->why) == 0)
                            c->gflops = 2.0 * M * (double)N * K / (ms * 1e6);
                        timed++;
                        fprintf(stderr, "  %s CLBlast %cGEMM %s%s %5d,%5d,%5d: ",
                                dev->info.id, half ? 'H' : 'S', ta ? "T" : "N",
                                tb ? "T" : "N", M, N, K);
                        if (isnan(c->gflops))
                            fprintf(stderr, "%s\n", c->why);
                        else
                            fprintf(stderr, "%8.2f GFLOP/s\n", c->gflops);
                    }
                }
                if (!c)
                    continue;
                if (half)
                    r->clb_hgemm = c->gflops;
                else
                    r->clb_sgemm = c->gflops;
                if (isnan(c->gflops) && !r->clb_note[0])
                    snprintf(r->clb_note, sizeof r->clb_note, "CLBlast: %.140s", c->why);
            }
        }
        sl += (size_t)snprintf(summary + sl, sizeof summary - sl,
                               "%s (%s): %s, %d GEMMs in %.0f s%s; ", dev->info.id,
                               clb_peer_device_name(p), fp16 ? "HGEMM and SGEMM"
                               : "SGEMM only (no cl_khr_fp16, so no HGEMM: SGEMM is the "
                               "best 16/32-bit GEMM CLBlast offers here)", timed,
                               now_s() - td, cut ? ", some cut by the budget" : "");
        if (sl >= sizeof summary)
            sl = sizeof summary - 1;
        clb_peer_close(&p);
    }
    free(cases);
    if (!any)
        snprintf(summary, sizeof summary, "no OpenCL device in this run");
    snprintf(b->clb_note, sizeof b->clb_note, "%s", summary);
    size_t n = strlen(b->clb_note);
    if (n >= 2 && !strcmp(b->clb_note + n - 2, "; "))
        b->clb_note[n - 2] = 0;
}

/* The best CLBlast figure of a row (HGEMM or SGEMM), its routine's name. */
static double clb_best(const krow *r, const char **routine)
{
    double h = r->clb_hgemm, s2 = r->clb_sgemm;
    if (!isnan(h) && (isnan(s2) || h >= s2)) {
        *routine = "HGEMM";
        return h;
    }
    *routine = "SGEMM";
    return s2;
}

/* ---- kernels ------------------------------------------------------------- */

static const char *const kernel_names[] = {"ternary_matmul", "f16_matmul", "f32_matmul",
                                           "ternary_matmul_t", "f16_matmul_t"};
#define N_KERNELS 5

static void add_krow(bench *b, const qv_device *d, const char *kernel,
                     const char *origin, int m, int n, int k)
{
    for (int i = 0; i < b->nk; i++)
        if (!strcmp(b->kr[i].device, d->info.id) && !strcmp(b->kr[i].kernel, kernel) &&
            b->kr[i].m == m && b->kr[i].n == n && b->kr[i].k == k)
            return;
    if (b->nk >= MAX_KROWS)
        return;
    krow *r = &b->kr[b->nk++];
    memset(r, 0, sizeof *r);
    snprintf(r->device, sizeof r->device, "%s", d->info.id);
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    snprintf(r->origin, sizeof r->origin, "%s", origin);
    r->m = m, r->n = n, r->k = k;
    r->gflops = r->peer_gflops = NAN;
    r->clb_sgemm = r->clb_hgemm = r->vk_gflops = NAN;
}

/* Tunes kernel at s (small budget; cached), then times it tuned. */
/* configurations the kernel table's two reference shapes are tuned with */
#define REF_EVALS 16

static qv_status tune_and_time(bench *b, qv_device *d, const char *kernel,
                               qv_shape s, int evals, double *ns, int *tuned,
                               qv_err *err, qv_tune_cache *cache)
{
    const qv_kernel_decl *k = qv_kernel_find(kernel);
    qv_tune_opts to = {.budget_evals = (size_t)evals, .seed = 1, .stop = &g_stop};
    qv_tune_entry e;
    int fc = 0, intr = 0;
    qv_err e1 = {0};
    if (qv_tune_kernel(cache, d, b->ref, k, s, &to, &e, &fc, &intr, &e1) &&
        (e1.code == QV_ERR_IO || e1.code == QV_ERR_CORRUPT))
        return qv_fail(err, e1.code, "%s", e1.msg);
    qv_config c;
    qv_status st = qv_tune_lookup(cache, d, k, s, &c, tuned, err);
    qv_instance *in = NULL;
    if (!st)
        st = qv_instance_new(d, k, s, 7, &in, err);
    if (!st)
        st = qv_time_config(in, &c, NULL, ns, err);
    qv_instance_destroy(&in);
    return st;
}

static void time_krows(bench *b, qv_tune_cache *cache, double limit_s)
{
    double t0 = now_s();
    for (int i = 0; i < b->nk && !g_stop; i++) {
        krow *r = &b->kr[i];
        if (now_s() - t0 > limit_s || left_s(b) < 60) {
            snprintf(r->note, sizeof r->note, "not measured: the kernel table's "
                     "share of the budget (%.0f s) was spent", limit_s);
            continue;
        }
        qv_device *d = NULL;
        for (int j = 0; j < b->nd; j++)
            if (!strcmp(b->devs[j]->info.id, r->device))
                d = b->devs[j];
        qv_err err = {0};
        double ns = 0, qns = 0;
        int tuned = 0, qt = 0;
        qv_shape s = {r->m, r->n, r->k, 0};
        /* the two reference shapes, beside ggml, get a deeper search */
        int evals = !strcmp(r->origin, "reference") && b->o.tune_evals < REF_EVALS
                        ? REF_EVALS : b->o.tune_evals;
        qv_status st = tune_and_time(b, d, r->kernel, s, evals, &ns, &tuned, &err,
                                     cache);
        if (!st && !strcmp(r->kernel, "ternary_matmul"))
            st = tune_and_time(b, d, "quantize_act", (qv_shape){r->m, 0, r->k, 0},
                               evals, &qns, &qt, &err, cache);
        if (st) {
            snprintf(r->note, sizeof r->note, "failed: %.140s", err.msg);
            fprintf(stderr, "  %s %s %d,%d,%d: %s\n", r->device, r->kernel, r->m,
                    r->n, r->k, err.msg);
            continue;
        }
        r->tuned = tuned;
        r->gflops = 2.0 * r->m * (double)r->n * r->k / (ns + qns);
        fprintf(stderr, "  %s %-16s %5d,%5d,%5d: %8.2f GFLOP/s%s\n", r->device,
                r->kernel, r->m, r->n, r->k, r->gflops, tuned ? "" : " (default)");
    }
}

/* ---- runs --------------------------------------------------------------- */

typedef struct guard {
    bench *b;
    run_rec *rec;
    int cut;
} guard;

static int on_progress(void *user, const qv_train_progress *p)
{
    guard *g = user;
    if (strcmp(p->phase, "train") || p->step < 1)
        return g_stop ? 1 : 0;
    run_rec *r = g->rec;
    if (p->step <= MAX_STEPS) {
        r->step_end[p->step] = p->elapsed_s;
        r->n_steps = (int)p->step;
    }
    fprintf(stderr, "    step %lld/%lld: %.1f s\n", (long long)p->step,
            (long long)p->steps, p->elapsed_s);
    if (p->step >= 2 && p->step < p->steps) {
        double per = r->step_end[p->step] - r->step_end[p->step - 1];
        /* another step, then eval after (about a forward: half a step) */
        if (per * 1.6 + 30 > left_s(g->b)) {
            g->cut = 1;
            return 1;
        }
    }
    return g_stop ? 1 : 0;
}

static void do_run(bench *b, int mi, int di, int w, qv_model *m, const qv_dataset *ds,
                   unsigned targets, qv_tune_cache *cache)
{
    qv_device *dev = b->devs[di];
    run_rec *rec = &b->mr[mi].run[di][w];
    run_shape(b, mi, dev, &rec->batch, &rec->seq);
    rec->steps_req = run_steps(b, mi, dev);
    int64_t T = (int64_t)rec->batch * rec->seq;
    rec->step_flops = qv_step_flops(&m->cfg, targets, b->o.rank, T, rec->seq, 0);
    /* prediction: seconds per FLOP of this device's earlier runs (this
     * mode's, else the other's), steps + evals (~1 step) + tuning guess */
    double spf = b->spf[di][w] > 0 ? b->spf[di][w] : b->spf[di][!w];
    if (spf > 0) {
        double pred = spf * rec->step_flops * (rec->steps_req + 1.0);
        if (pred > left_s(b) - 30) {
            rec->state = RUN_SKIPPED;
            snprintf(rec->note, sizeof rec->note,
                     "predicted %.0f s (%.2g s per GFLOP on this device so "
                     "far) > %.0f s of budget left", pred, spf * 1e9, left_s(b));
            note(b, "%s on %s, %s: %s", models[mi].label, dev->info.id,
                 qv_weights_name((qv_weights)w), rec->note);
            return;
        }
    } else if (left_s(b) < 120) {
        rec->state = RUN_SKIPPED;
        snprintf(rec->note, sizeof rec->note, "%.0f s of budget left",
                 left_s(b));
        note(b, "%s on %s, %s: %s", models[mi].label, dev->info.id,
             qv_weights_name((qv_weights)w), rec->note);
        return;
    }
    double t0 = now_s();
    qv_err err = {0};
    /* tune at the model's shapes */
    qv_train_shape_opts so = {.weights = (qv_weights)w, .batch = rec->batch,
                              .seq = rec->seq, .rank = b->o.rank, .targets = targets,
                              .head_f16 = qv_model_head_f16(m),
                              .max_alloc = dev->info.max_alloc_bytes};
    qv_train_tune_opts to = {.budget_evals = (size_t)b->o.tune_evals, .stop = &g_stop};
    if (qv_train_tune(cache, dev, b->ref, m, &so, &to, &rec->tune, &err)) {
        rec->state = RUN_FAILED;
        snprintf(rec->note, sizeof rec->note, "tune failed: %.500s", err.msg);
        return;
    }
    fprintf(stderr, "    tuned %zu, cached %zu, failed %zu of %zu in %.1f s %s\n",
            rec->tune.tuned, rec->tune.cached, rec->tune.failed, rec->tune.launches,
            rec->tune.seconds, rec->tune.note);
    qv_train_opts o;
    qv_train_opts_default(&o);
    o.weights = (qv_weights)w;
    o.rank = b->o.rank;
    o.alpha = 2.0f * (float)b->o.rank;
    o.targets = targets;
    o.steps = rec->steps_req;
    o.warmup = 0;
    o.batch = rec->batch;
    o.seq = rec->seq;
    o.accum = 1;
    o.eval_batches = 1;
    o.cache = cache;
    o.checkpoint = models[mi].ckpt;
    guard g = {b, rec, 0};
    o.progress = on_progress;
    o.progress_user = &g;
    o.stop = &g_stop;
    qv_status s = qv_train_run(dev, m, ds, NULL, &o, &rec->r, &err);
    free(rec->r.losses);
    rec->r.losses = NULL;
    if (s) {
        rec->state = RUN_FAILED;
        snprintf(rec->note, sizeof rec->note, "failed: %.500s", err.msg);
        rec->wall_s = now_s() - t0;
        return;
    }
    if (rec->r.interrupted && !g.cut) {
        rec->state = RUN_SKIPPED;
        snprintf(rec->note, sizeof rec->note, "interrupted");
        rec->wall_s = now_s() - t0;
        return;
    }
    rec->state = g.cut ? RUN_CUT : RUN_DONE;
    if (g.cut) {
        snprintf(rec->note, sizeof rec->note, "cut to %d steps by the budget",
                 rec->n_steps);
        note(b, "%s on %s, %s: %s", models[mi].label, dev->info.id,
             qv_weights_name((qv_weights)w), rec->note);
    }
    int n = rec->n_steps;
    if (n >= 2) {
        rec->steady_steps = n - 1;
        rec->steady_s = rec->step_end[n] - rec->step_end[1];
    } else if (n == 1) { /* one step: warm-up included */
        rec->steady_steps = 1;
        rec->steady_s = rec->step_end[1];
    }
    if (rec->steady_s > 0) {
        rec->tps_steady = (double)T * rec->steady_steps / rec->steady_s;
        b->spf[di][w] = rec->steady_s / rec->steady_steps / rec->step_flops;
    }
    if (qv_gemm_peak(dev, cache, &m->cfg, (qv_weights)w, (int32_t)T,
                     &rec->gemm_gflops, &err))
        snprintf(rec->note + strlen(rec->note), sizeof rec->note - strlen(rec->note),
                 "%sno MFU: %.300s", rec->note[0] ? "; " : "", err.msg);
    else
        rec->mfu = qv_mfu(rec->step_flops * rec->steady_steps, rec->steady_s,
                          rec->gemm_gflops);
    rec->wall_s = now_s() - t0;
}

/* ---- formatting ------------------------------------------------------------ */

static void fmt_bytes(uint64_t v, char *buf, size_t n)
{
    const double k = 1024.0;
    if (v < 1024)
        snprintf(buf, n, "%llu B", (unsigned long long)v);
    else if (v < 1024ull * 1024)
        snprintf(buf, n, "%.1f KiB", (double)v / k);
    else if (v < 1024ull * 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", (double)v / (k * k));
    else
        snprintf(buf, n, "%.2f GiB", (double)v / (k * k * k));
}

static void fmt_params(uint64_t p, char *buf, size_t n)
{
    if (p >= 1000000000ull)
        snprintf(buf, n, "%.2fB", (double)p / 1e9);
    else if (p >= 1000000ull)
        snprintf(buf, n, "%.1fM", (double)p / 1e6);
    else
        snprintf(buf, n, "%.1fk", (double)p / 1e3);
}

static const char *state_name(int s)
{
    switch (s) {
    case RUN_DONE: return "done";
    case RUN_CUT: return "cut";
    case RUN_SKIPPED: return "skipped";
    case RUN_FAILED: return "failed";
    default: return "not run";
    }
}

static int has_figures(const run_rec *r) { return r->state == RUN_DONE || r->state == RUN_CUT; }

/* A growing string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (s->p && s->n + (size_t)k < s->cap) {
            s->n += (size_t)k;
            return;
        }
        size_t cap = (s->cap ? s->cap * 2 : 65536) + (size_t)k;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
}

static int write_file(const char *path, const void *data, size_t n)
{
    qv_file_part part = {data, n};
    qv_err err = {0};
    if (qv_file_write_atomic(path, "report", &part, 1, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* ---- goals ----------------------------------------------------------------- */

typedef struct goal {
    char name[160];
    const char *target;
    double measured; /* NAN: not measured */
    int met;         /* 1, 0, or -1: not measured */
    char detail[800];
} goal;

static const krow *find_krow(const bench *b, const char *backend, const char *kernel,
                             int m, int n, int k)
{
    for (int i = 0; i < b->nk; i++) {
        const krow *r = &b->kr[i];
        if (strcmp(r->kernel, kernel) || r->m != m || r->n != n || r->k != k ||
            isnan(r->gflops))
            continue;
        for (int d = 0; d < b->nd; d++)
            if (!strcmp(b->devs[d]->info.id, r->device) &&
                !strcmp(b->devs[d]->info.backend, backend))
                return r;
    }
    return NULL;
}

static void ratio_goal(const bench *b, goal *g, const char *kernel, int m, double need)
{
    const krow *r = find_krow(b, "opencl", kernel, m, 2048, 2048);
    g->measured = NAN;
    g->met = -1;
    if (!r)
        snprintf(g->detail, sizeof g->detail, "not measured: no OpenCL row of %s at "
                 "%d,2048,2048", kernel, m);
    else if (isnan(r->peer_gflops))
        snprintf(g->detail, sizeof g->detail, "not measured: no ggml figure (%.300s)",
                 b->peer_note);
    else {
        g->measured = r->gflops / r->peer_gflops;
        g->met = g->measured >= need;
        snprintf(g->detail, sizeof g->detail, "%s: qvac %.1f GFLOP/s, ggml %s %.1f",
                 r->device, r->gflops, r->peer_type, r->peer_gflops);
    }
}

/* The same-API peer of a row: CLBlast's best on OpenCL, ggml-vulkan on
 * Vulkan; NAN when none. */
static double same_api(const bench *b, const krow *r, const char **what)
{
    for (int d = 0; d < b->nd; d++) {
        if (strcmp(b->devs[d]->info.id, r->device))
            continue;
        if (!strcmp(b->devs[d]->info.backend, "opencl")) {
            const char *rt = "SGEMM";
            double v = clb_best(r, &rt);
            *what = !strcmp(rt, "HGEMM") ? "CLBlast HGEMM" : "CLBlast SGEMM";
            return v;
        }
        if (!strcmp(b->devs[d]->info.backend, "vulkan")) {
            *what = "ggml-vulkan";
            return r->vk_gflops;
        }
    }
    *what = "-";
    return NAN;
}

/* qvac's f16_matmul ÷ the same-API peer on the first device of backend:
 * at 512x2048x2048 (models = 0) or the worst of the models' shapes, with
 * f16_matmul_t and f32_matmul at the same shapes in the detail. */
static void same_api_goal(const bench *b, goal *g, const char *backend, int models_)
{
    const char *peer_note = !strcmp(backend, "opencl") ? b->clb_note : b->vk_note;
    const char *dev = NULL;
    for (int d = 0; d < b->nd && !dev; d++)
        if (!strcmp(b->devs[d]->info.backend, backend))
            dev = b->devs[d]->info.id;
    g->measured = NAN;
    g->met = -1;
    if (!dev) {
        snprintf(g->detail, sizeof g->detail, "not measured: no %s device in this run",
                 backend);
        return;
    }
    double worst = NAN, logsum = 0, other_worst = NAN;
    int cnt = 0;
    const krow *wr = NULL;
    const char *what = "-";
    for (int i = 0; i < b->nk; i++) {
        const krow *r = &b->kr[i];
        int ref = !strcmp(r->origin, "reference");
        if (strcmp(r->device, dev) || (models_ ? ref : !(ref && r->m == 512)) ||
            strncmp(r->kernel, "f", 1) || isnan(r->gflops))
            continue;
        const char *w = "-";
        double pv = same_api(b, r, &w);
        if (isnan(pv) || !(pv > 0))
            continue;
        double q = r->gflops / pv;
        if (strcmp(r->kernel, "f16_matmul")) {
            if (isnan(other_worst) || q < other_worst)
                other_worst = q;
            continue;
        }
        logsum += log(q);
        cnt++;
        if (isnan(worst) || q < worst) {
            worst = q;
            wr = r;
            what = w;
        }
    }
    if (!wr) {
        snprintf(g->detail, sizeof g->detail, "not measured: no %s figure beside %s's "
                 "f16_matmul%s (%.280s)", !strcmp(backend, "opencl") ? "CLBlast"
                 : "ggml-vulkan", dev, models_ ? " at the models' shapes" : "", peer_note);
        return;
    }
    g->measured = worst;
    g->met = worst >= 0.8;
    const char *w2 = "-";
    double pv = same_api(b, wr, &w2);
    char o[96] = "";
    if (!isnan(other_worst))
        snprintf(o, sizeof o, "; f16_matmul_t / f32_matmul at the same shapes: worst %.2fx",
                 other_worst);
    if (!models_)
        snprintf(g->detail, sizeof g->detail, "%s %d,%d,%d: qvac %.1f GFLOP/s, %s %.1f%s",
                 dev, wr->m, wr->n, wr->k, wr->gflops, what, pv, o);
    else /* name the model and the geometric mean */
        snprintf(g->detail, sizeof g->detail, "%s %d,%d,%d (%s): qvac %.1f GFLOP/s, %s "
                 "%.1f; geometric mean over %d f16_matmul shapes %.2fx%s", dev, wr->m, wr->n,
                 wr->k, wr->origin, wr->gflops, what, pv, cnt, exp(logsum / cnt), o);
    if (!strcmp(backend, "opencl"))
        snprintf(g->detail + strlen(g->detail), sizeof g->detail - strlen(g->detail),
                 "%s; CLBlast untuned (its database's defaults: Debian ships no "
                 "clblast_tuner_xgemm)", strstr(b->clb_note, "no cl_khr_fp16")
                 ? "; no cl_khr_fp16 on the device: SGEMM is CLBlast's best here" : "");
}

static int make_goals(const bench *b, goal *g)
{
    int n = 0;
    g[n] = (goal){"f16 GEMM vs ggml CPU F16 through PoCL, 512x2048x2048", ">= 0.3x", 0, 0, ""};
    ratio_goal(b, &g[n++], "f16_matmul", 512, 0.3);
    g[n] = (goal){"ternary_matmul + quantize_act vs ggml TQ2_0, 512x2048x2048", ">= 0.6x", 0, 0, ""};
    ratio_goal(b, &g[n++], "ternary_matmul", 512, 0.6);
    g[n] = (goal){"ternary_matmul + quantize_act vs ggml TQ2_0, M=1", ">= 1x", 0, 0, ""};
    ratio_goal(b, &g[n++], "ternary_matmul", 1, 1.0);
    /* MFU at ~700M, ternary: the OpenCL run, else any */
    g[n] = (goal){"MFU of a ~700M LoRA step (ternary)", ">= 50%", NAN, -1, ""};
    snprintf(g[n].detail, sizeof g[n].detail, "not measured: no completed ~700M ternary run");
    for (int pass = 0; pass < 2; pass++)
        for (int d = 0; d < b->nd && g[n].met < 0; d++) {
            const run_rec *r = &b->mr[1].run[d][0];
            if (!has_figures(r) || !(r->mfu > 0) ||
                (!pass && strcmp(b->devs[d]->info.backend, "opencl")))
                continue;
            g[n].measured = r->mfu;
            /* the goal is at a realistic batch (issue 12: e.g. 4 x 256) */
            int small = r->batch * r->seq < 1024;
            g[n].met = small ? -1 : r->mfu >= 0.5;
            snprintf(g[n].detail, sizeof g[n].detail, "%s, %d x %d tokens, %d steady "
                     "steps%s", b->devs[d]->info.id, r->batch, r->seq, r->steady_steps,
                     small ? "; not judged: fewer than 4 x 256 tokens a step" : "");
        }
    n++;
    for (int mi = 2; mi <= 3; mi++) { /* 1.3b, then 1.3b-mem */
    int bt = models[mi].batch, sq = models[mi].seq;
    g[n] = (goal){"", ">= 80%", NAN, -1, ""};
    snprintf(g[n].name, sizeof g[n].name, "peak device memory of a ~1.3B LoRA "
             "fine-tune below f16 (%d x %d tokens%s)", bt, sq,
             models[mi].ckpt ? ", --checkpoint-activations" : "");
    snprintf(g[n].detail, sizeof g[n].detail, "not measured: no %s pair of runs",
             models[mi].label);
    for (int d = 0; d < b->nd && g[n].met < 0; d++) {
        const run_rec *t = &b->mr[mi].run[d][0], *h = &b->mr[mi].run[d][1];
        if (!has_figures(t) || !has_figures(h) || !h->r.mem.peak)
            continue;
        g[n].measured = 1.0 - (double)t->r.mem.peak / (double)h->r.mem.peak;
        g[n].met = g[n].measured >= 0.8;
        char a[32], c[32];
        fmt_bytes(t->r.mem.peak, a, sizeof a);
        fmt_bytes(h->r.mem.peak, c, sizeof c);
        snprintf(g[n].detail, sizeof g[n].detail, "%s: ternary %s, f16 %s",
                 b->devs[d]->info.id, a, c);
    }
    n++;
    }
    g[n] = (goal){"f16 baseline >= 0.8x CLBlast (OpenCL), 512x2048x2048", ">= 0.8x", NAN,
                  -1, ""};
    same_api_goal(b, &g[n++], "opencl", 0);
    g[n] = (goal){"f16 baseline >= 0.8x CLBlast (OpenCL), the models' shapes (worst)",
                  ">= 0.8x", NAN, -1, ""};
    same_api_goal(b, &g[n++], "opencl", 1);
    g[n] = (goal){"f16 baseline >= 0.8x llama.cpp Vulkan F16 mul_mat, 512x2048x2048",
                  ">= 0.8x", NAN, -1, ""};
    same_api_goal(b, &g[n++], "vulkan", 0);
    g[n] = (goal){"f16 baseline >= 0.8x llama.cpp Vulkan F16 mul_mat, the models' shapes "
                  "(worst)", ">= 0.8x", NAN, -1, ""};
    same_api_goal(b, &g[n++], "vulkan", 1);
    return n;
}

/* ---- SVG ------------------------------------------------------------------- */

/* A grouped bar chart on a log scale: one group per (model, device), bars
 * ternary and f16; values <= 0 are drawn as "n/a". */
static int write_svg(const char *path, const char *title, const char *unit,
                     char labels[][64], double (*val)[2], int ng)
{
    sbuf s = {0};
    int W = 120 + ng * 110, H = 380, x0 = 70, y0 = 40, ph = 260;
    if (W < 480)
        W = 480;
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < ng; i++)
        for (int w = 0; w < 2; w++)
            if (val[i][w] > 0) {
                lo = fmin(lo, val[i][w]);
                hi = fmax(hi, val[i][w]);
            }
    if (!(hi > 0)) {
        lo = 1;
        hi = 10;
    }
    double l0 = floor(log10(lo)), l1 = ceil(log10(hi));
    if (l1 <= l0)
        l1 = l0 + 1;
    sb(&s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
           "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
           "<text x=\"%d\" y=\"20\" font-size=\"14\">%s (%s, log scale)</text>\n",
       W, H, W, H, x0, title, unit);
    for (double e = l0; e <= l1 + 1e-9; e += 1) {
        double y = y0 + ph - (e - l0) / (l1 - l0) * ph;
        sb(&s, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
           x0, y, W - 20, y, x0 - 5, y + 4, pow(10, e));
    }
    const char *color[2] = {"#2b6cb0", "#dd6b20"}, *name[2] = {"ternary", "f16"};
    for (int i = 0; i < ng; i++) {
        int gx = x0 + 15 + i * 110;
        for (int w = 0; w < 2; w++) {
            int bx = gx + w * 40;
            double v = val[i][w];
            if (v > 0) {
                double hgt = (log10(v) - l0) / (l1 - l0) * ph;
                if (hgt < 1)
                    hgt = 1;
                sb(&s, "<rect x=\"%d\" y=\"%.1f\" width=\"36\" height=\"%.1f\" "
                       "fill=\"%s\"><title>%s %s: %.4g %s</title></rect>\n"
                       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" "
                       "font-size=\"9\">%.3g</text>\n",
                   bx, y0 + ph - hgt, hgt, color[w], labels[i], name[w], v, unit,
                   bx + 18, y0 + ph - hgt - 3, v);
            } else {
                sb(&s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                       "font-size=\"9\">n/a</text>\n", bx + 18, y0 + ph - 3);
            }
        }
        sb(&s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
           gx + 38, y0 + ph + 16, labels[i]);
    }
    sb(&s, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
       x0, y0 + ph, W - 20, y0 + ph);
    for (int w = 0; w < 2; w++)
        sb(&s, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
               "<text x=\"%d\" y=\"%d\">%s</text>\n",
           x0 + w * 90, H - 30, color[w], x0 + 16 + w * 90, H - 20, name[w]);
    sb(&s, "</svg>\n");
    int rc = s.oom ? -1 : write_file(path, s.p, s.n);
    free(s.p);
    return rc;
}

/* ---- the report ------------------------------------------------------------ */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int write_all(bench *b, int final)
{
    const opts *o = &b->o;
    goal goals[24];
    int ng = make_goals(b, goals);
    struct utsname u;
    uname(&u);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    char tl[128];
    unsigned tm = 0;
    qv_lin_parse_targets(o->targets, &tm, NULL);
    qv_lin_format_targets(tm, tl, sizeof tl);
    const char *bn = strrchr(b->base, '/');
    bn = bn ? bn + 1 : b->base;
    double elapsed = now_s() - b->t0;

    /* ---- JSON ---- */
    json_t *j = json_object();
    json_object_set_new(j, "command", json_string(b->cmdline));
    json_object_set_new(j, "date", json_string(b->started));
    json_object_set_new(j, "complete", json_boolean(final));
    json_object_set_new(j, "seconds", json_real(elapsed));
    json_object_set_new(j, "budget_minutes", json_real(o->budget_min));
    json_object_set_new(j, "machine", json_pack("{s:s, s:s, s:i, s:f}", "os", u.sysname,
                        "arch", u.machine, "cpus", (int)ncpu, "memory_gib",
                        (double)pages * (double)psz / (1024.0 * 1024 * 1024)));
    json_t *jd = json_array();
    for (int d = 0; d < b->nd; d++)
        json_array_append_new(jd, json_pack("{s:s, s:s, s:s, s:s, s:b}", "id",
                              b->devs[d]->info.id, "name", b->devs[d]->info.name,
                              "vendor", b->devs[d]->info.vendor, "driver",
                              b->devs[d]->info.driver, "cpu", b->devs[d]->info.is_cpu));
    json_object_set_new(j, "devices", jd);
    json_object_set_new(j, "finetune", json_pack("{s:i, s:i, s:s, s:i, s:i, s:i}", "rank",
                        o->rank, "alpha", 2 * o->rank, "targets", tl, "steps", o->steps,
                        "tune_evals", o->tune_evals, "eval_batches", 1));
    json_t *jr = json_array();
    for (int i = 0; i < N_MODELS; i++) {
        if (!b->mr[i].selected)
            continue;
        for (int d = 0; d < b->nd; d++)
            for (int w = 0; w < 2; w++) {
                const run_rec *r = &b->mr[i].run[d][w];
                if (r->state == RUN_NOT_RUN)
                    continue;
                json_t *x = json_object();
                json_object_set_new(x, "model", json_string(models[i].key));
                json_object_set_new(x, "device", json_string(b->devs[d]->info.id));
                json_object_set_new(x, "weights", json_string(w ? "f16" : "ternary"));
                json_object_set_new(x, "state", json_string(state_name(r->state)));
                json_object_set_new(x, "note", json_string(r->note));
                json_object_set_new(x, "batch", json_integer(r->batch));
                json_object_set_new(x, "seq", json_integer(r->seq));
                json_object_set_new(x, "checkpoint_activations",
                                    json_boolean(models[i].ckpt));
                json_object_set_new(x, "steps", json_integer(r->n_steps));
                json_object_set_new(x, "steady_steps", json_integer(r->steady_steps));
                json_object_set_new(x, "tokens_per_s",
                                    has_figures(r) ? jnum(r->tps_steady) : json_null());
                json_object_set_new(x, "tokens_per_s_all_steps",
                                    has_figures(r) ? jnum(r->r.tokens_per_s) : json_null());
                json_object_set_new(x, "mfu", r->mfu > 0 ? json_real(r->mfu) : json_null());
                json_object_set_new(x, "gemm_gflops", r->gemm_gflops > 0
                                    ? json_real(r->gemm_gflops) : json_null());
                json_object_set_new(x, "step_flops", json_real(r->step_flops));
                json_object_set_new(x, "peak_bytes", has_figures(r)
                                    ? json_integer((json_int_t)r->r.mem.peak) : json_null());
                json_t *mb = json_object();
                for (int t = 0; t < QV_MEM_NTAGS && has_figures(r); t++)
                    json_object_set_new(mb, qv_mem_tag_name((qv_mem_tag)t),
                                        json_integer((json_int_t)r->r.mem.by_tag[t]));
                json_object_set_new(x, "peak_bytes_by_category", mb);
                json_object_set_new(x, "tune", json_pack("{s:I, s:I, s:I, s:I, s:f}",
                                    "launches", (json_int_t)r->tune.launches,
                                    "tuned", (json_int_t)r->tune.tuned,
                                    "cached", (json_int_t)r->tune.cached,
                                    "failed", (json_int_t)r->tune.failed,
                                    "seconds", r->tune.seconds));
                json_object_set_new(x, "train_loss_before", has_figures(r)
                                    ? jnum(r->r.train_loss_before) : json_null());
                json_object_set_new(x, "wall_s", json_real(r->wall_s));
                json_array_append_new(jr, x);
            }
    }
    json_object_set_new(j, "runs", jr);
    json_t *jk = json_array();
    for (int i = 0; i < b->nk; i++) {
        const krow *r = &b->kr[i];
        json_t *x = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:b, s:s}", "device",
                              r->device, "kernel", r->kernel, "shape_of", r->origin,
                              "m", r->m, "n", r->n, "k", r->k, "gflops", jnum(r->gflops),
                              "tuned", r->tuned, "note", r->note);
        json_object_set_new(x, "includes", json_string(strcmp(r->kernel, "ternary_matmul")
                                                       ? "" : "quantize_act"));
        json_object_set_new(x, "peer_gflops", jnum(r->peer_gflops));
        if (!isnan(r->peer_gflops)) {
            json_object_set_new(x, "peer", json_string("ggml-cpu"));
            json_object_set_new(x, "peer_type", json_string(r->peer_type));
        }
        const char *rt = "SGEMM";
        double cb = clb_best(r, &rt);
        json_object_set_new(x, "clblast_gflops", jnum(cb));
        json_object_set_new(x, "clblast_routine", isnan(cb) ? json_null() : json_string(rt));
        json_object_set_new(x, "clblast_sgemm_gflops", jnum(r->clb_sgemm));
        json_object_set_new(x, "clblast_hgemm_gflops", jnum(r->clb_hgemm));
        if (r->clb_note[0])
            json_object_set_new(x, "clblast_note", json_string(r->clb_note));
        json_object_set_new(x, "ggml_vulkan_gflops", jnum(r->vk_gflops));
        if (r->vk_note[0])
            json_object_set_new(x, "ggml_vulkan_note", json_string(r->vk_note));
        json_array_append_new(jk, x);
    }
    json_object_set_new(j, "kernels", jk);
    json_object_set_new(j, "peer_note", json_string(b->peer_note));
    json_object_set_new(j, "ggml_vulkan_note", json_string(b->vk_note));
    json_object_set_new(j, "clblast_note", json_string(b->clb_note));
    json_object_set_new(j, "phase_seconds",
                        json_pack("{s:f,s:f,s:f,s:f,s:f}", "ggml_cpu", b->phase_s[0],
                                  "ggml_vulkan", b->phase_s[1], "kernel_table",
                                  b->phase_s[2], "clblast", b->phase_s[3],
                                  "making_models", b->phase_s[4]));
    json_t *jg = json_array();
    for (int i = 0; i < ng; i++)
        json_array_append_new(jg, json_pack("{s:s, s:s, s:o, s:o, s:s}", "name",
                              goals[i].name, "target", goals[i].target, "measured",
                              jnum(goals[i].measured), "met",
                              goals[i].met < 0 ? json_null() : json_boolean(goals[i].met),
                              "detail", goals[i].detail));
    json_object_set_new(j, "goals", jg);
    json_object_set_new(j, "notes", json_string(b->notes));
    char *txt = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    char path[4200];
    snprintf(path, sizeof path, "%s.json", b->base);
    int rc = txt ? write_file(path, txt, strlen(txt)) : -1;
    free(txt);

    /* ---- SVG ---- */
    char labels[N_MODELS * MAX_DEVS][64];
    double tps[N_MODELS * MAX_DEVS][2], mem[N_MODELS * MAX_DEVS][2];
    int nbar = 0;
    for (int i = 0; i < N_MODELS; i++)
        for (int d = 0; d < b->nd && b->mr[i].selected; d++) {
            snprintf(labels[nbar], sizeof labels[0], "%s %s", models[i].label,
                     b->devs[d]->info.id);
            for (int w = 0; w < 2; w++) {
                const run_rec *r = &b->mr[i].run[d][w];
                tps[nbar][w] = has_figures(r) ? r->tps_steady : 0;
                mem[nbar][w] = has_figures(r) ? (double)r->r.mem.peak / 1048576.0 : 0;
            }
            nbar++;
        }
    snprintf(path, sizeof path, "%s-tokens.svg", b->base);
    rc |= write_svg(path, "Steady-state LoRA training throughput", "tokens/s", labels,
                    tps, nbar);
    snprintf(path, sizeof path, "%s-memory.svg", b->base);
    rc |= write_svg(path, "Peak device memory of the fine-tune", "MiB", labels, mem, nbar);

    /* ---- Markdown ---- */
    sbuf s = {0};
    sb(&s, "# Training: ternary vs 16-bit weights\n\n");
    sb(&s, "Written by `benchmarks/bench_train.c` from one run, with `%s.json` (every "
           "figure below) and the charts; nothing is typed by hand.\n\n", bn);
    sb(&s, "Command:\n\n    %s\n\n", b->cmdline);
    sb(&s, "- Date: %s; %.0f s of a %.0f-minute budget%s\n", b->started, elapsed,
       o->budget_min, final ? "" : " (incomplete: still running or interrupted)");
    sb(&s, "- Machine: %s %s, %ld CPU cores, %.1f GiB memory\n", u.sysname, u.machine,
       ncpu, (double)pages * (double)psz / (1024.0 * 1024 * 1024));
    sb(&s, "- Devices:\n");
    for (int d = 0; d < b->nd; d++)
        sb(&s, "  - `%s`: %s (%s, driver %s)%s\n", b->devs[d]->info.id,
           b->devs[d]->info.name, b->devs[d]->info.vendor, b->devs[d]->info.driver,
           b->devs[d]->info.is_cpu ? ", runs on the host CPU" : "");
    sb(&s, "- Fine-tune: LoRA rank %d, alpha %d, targets %s; %d optimizer steps a run "
           "(1 warm-up, then steady state) unless the table's steps column says fewer "
           "(%s) or the budget cut it; eval_batches 1; synthetic token data. Batch x "
           "sequence per model and backend in the tables (fewer tokens at 1.3B / 3B "
           "and on Vulkan, to fit the budget).\n",
       o->rank, 2 * o->rank, tl, o->steps,
       o->steps_set ? "--steps given: every run" : "fewer at ~3B and on Vulkan at ~700M "
       "and up, to fit the 45-minute budget on a 2-core machine");
    sb(&s, "- The ~1.3B memory probe runs on the first device only: peak bytes count "
           "the same buffers on every device.\n");
    sb(&s, "- Activation checkpointing (`--checkpoint-activations`: one layer's "
           "intermediates, each layer's forward run again in the backward) in both "
           "runs of:");
    for (int i = 0, any = 0; i < N_MODELS; i++)
        if (models[i].ckpt)
            sb(&s, "%s %s", any++ ? "," : "", models[i].label);
    sb(&s, " (where activations would outweigh the ternary weights); the others "
           "keep every layer's activations (fastest).\n");
    sb(&s, "- Before each run, every kernel and shape the step launches is tuned on "
           "the device (`qv_train_tune`, %d configurations each, verified against "
           "ref, cached in `%s`); the time is in the tables.\n", o->tune_evals, o->db);
    sb(&s, "- tokens/s is the steady state: tokens of steps 2..n over their time, "
           "from the per-step progress timestamps. MFU = model FLOPs of those steps "
           "(train/mfu.h: frozen linears forward + backward to the input, LoRA, "
           "causal attention, head) / their seconds / the base matmul's measured "
           "FLOP-weighted GFLOP/s at the model's shapes in the tuned configurations "
           "(ternary: quantize_act + ternary_matmul; f16: f16_matmul). The "
           "backward's transposed kernels may run faster than that forward "
           "matmul, so MFU can exceed 100%%.\n\n");
    sb(&s, "- Where the time went: ggml CPU peer %.0f s, ggml-vulkan peer %.0f s, "
           "kernel table %.0f s, CLBlast %.0f s, making the models %.0f s; the runs' "
           "own seconds are in the tables.\n\n", b->phase_s[0], b->phase_s[1],
       b->phase_s[2], b->phase_s[3], b->phase_s[4]);
    if (b->notes[0])
        sb(&s, "Budget notes:\n\n%s\n", b->notes);

    sb(&s, "## Goals (issue 12)\n\n| goal | target | measured | met | detail |\n"
           "|---|---|---|---|---|\n");
    for (int i = 0; i < ng; i++) {
        char m[32] = "-";
        if (!isnan(goals[i].measured))
            snprintf(m, sizeof m, strchr(goals[i].target, '%') ? "%.1f%%" : "%.2fx",
                     strchr(goals[i].target, '%') ? 100 * goals[i].measured
                                                  : goals[i].measured);
        sb(&s, "| %s | %s | %s | %s | %s |\n", goals[i].name, goals[i].target, m,
           goals[i].met < 0 ? "not measured" : goals[i].met ? "**met**" : "not met",
           goals[i].detail);
    }

    sb(&s, "\n## Models\n\n| model | shape of | source | dim | layers | heads | kv heads "
           "| ffn | vocab | ternary params | other params |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!b->mr[i].selected)
            continue;
        const qv_model_config *c = &b->mr[i].cfg;
        char tp[32], op[32];
        fmt_params(b->mr[i].ternary_params, tp, sizeof tp);
        fmt_params(b->mr[i].other_params, op, sizeof op);
        sb(&s, "| %s | %s | %s | %d | %d | %d | %d | %d | %d | %s | %s |\n",
           models[i].label, models[i].like, b->mr[i].source ? b->mr[i].source : "-",
           c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab, tp, op);
    }

    sb(&s, "\n## Throughput and MFU\n\n![tokens/s](%s-tokens.svg)\n\n", bn);
    sb(&s, "| model | device | weights | batch x seq | steps (steady) | tokens/s | "
           "tokens/s all steps | GFLOP a step | base matmul GFLOP/s | MFU | tune s "
           "(tuned/cached/failed) | run s | note |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++)
        for (int d = 0; d < b->nd && b->mr[i].selected; d++)
            for (int w = 0; w < 2; w++) {
                const run_rec *r = &b->mr[i].run[d][w];
                if (r->state == RUN_NOT_RUN)
                    continue;
                char c1[32] = "-", c2[32] = "-", c3[32] = "-", c4[32] = "-";
                if (has_figures(r)) {
                    snprintf(c1, sizeof c1, "%.2f", r->tps_steady);
                    snprintf(c2, sizeof c2, "%.2f", r->r.tokens_per_s);
                }
                if (r->gemm_gflops > 0)
                    snprintf(c3, sizeof c3, "%.1f", r->gemm_gflops);
                if (r->mfu > 0)
                    snprintf(c4, sizeof c4, "%.1f%%", 100 * r->mfu);
                sb(&s, "| %s | %s | %s | %d x %d | %d (%d) | %s | %s | %.1f | %s | %s | "
                       "%.1f (%zu/%zu/%zu) | %.1f | %s%s%s |\n", models[i].label,
                   b->devs[d]->info.id, w ? "f16" : "ternary", r->batch, r->seq,
                   r->n_steps, r->steady_steps, c1, c2, r->step_flops / 1e9, c3, c4,
                   r->tune.seconds, r->tune.tuned, r->tune.cached, r->tune.failed,
                   r->wall_s, r->state == RUN_DONE ? "" : state_name(r->state),
                   r->note[0] && r->state != RUN_DONE ? ": " : "", r->note);
            }
    sb(&s, "\nternary ÷ f16 steady tokens/s:");
    for (int i = 0; i < N_MODELS; i++)
        for (int d = 0; d < b->nd && b->mr[i].selected; d++) {
            const run_rec *t = &b->mr[i].run[d][0], *h = &b->mr[i].run[d][1];
            if (has_figures(t) && has_figures(h) && h->tps_steady > 0)
                sb(&s, " %s on %s %.2fx;", models[i].label, b->devs[d]->info.id,
                   t->tps_steady / h->tps_steady);
        }
    sb(&s, "\n\n## Peak device memory\n\n![peak memory](%s-memory.svg)\n\n", bn);
    sb(&s, "Peak bytes of live device buffers over the whole run (upload, evaluation, "
           "training) and what each category held at that peak. QVAC Fabric "
           "publishes 77.8%% less than 16-bit.\n\n| model | device | weights mode | peak |");
    for (int t = 0; t < QV_MEM_NTAGS; t++)
        sb(&s, " %s |", qv_mem_tag_name((qv_mem_tag)t));
    sb(&s, " peak below f16 |\n|---|---|---|---|");
    for (int t = 0; t <= QV_MEM_NTAGS; t++)
        sb(&s, "---|");
    sb(&s, "\n");
    for (int i = 0; i < N_MODELS; i++)
        for (int d = 0; d < b->nd && b->mr[i].selected; d++)
            for (int w = 0; w < 2; w++) {
                const run_rec *r = &b->mr[i].run[d][w], *h = &b->mr[i].run[d][1];
                if (!has_figures(r))
                    continue;
                char pb[32];
                fmt_bytes(r->r.mem.peak, pb, sizeof pb);
                sb(&s, "| %s | %s | %s | %s |", models[i].label, b->devs[d]->info.id,
                   w ? "f16" : "ternary", pb);
                for (int t = 0; t < QV_MEM_NTAGS; t++) {
                    fmt_bytes(r->r.mem.by_tag[t], pb, sizeof pb);
                    sb(&s, " %s |", r->r.mem.by_tag[t] ? pb : "0");
                }
                if (!w && has_figures(h) && h->r.mem.peak)
                    sb(&s, " %.1f%% |\n",
                       100.0 * (1.0 - (double)r->r.mem.peak / (double)h->r.mem.peak));
                else
                    sb(&s, " - |\n");
            }

    sb(&s, "\n## Kernels beside ggml's CPU kernels and the same-API 16-bit peers\n\n");
    sb(&s, "qvac's kernels tuned (%d configurations at the models' shapes, %d at "
           "512x2048x2048 and M=1; `qvac tune`'s search) and timed "
           "by the device's own timer in their tuned configuration; ternary_matmul's "
           "figure includes quantize_act's time, as ggml's MUL_MAT includes "
           "quantising its input. GFLOP/s = 2·M·N·K / time. ggml: %s. The transposed "
           "kernels (dX = dY·W) are set beside ggml at (M, K, N), the same FLOPs; "
           "TQ2_0 needs K %% 256 == 0, so some shapes have no ternary peer.\n\n",
       o->tune_evals, o->tune_evals < REF_EVALS ? REF_EVALS : o->tune_evals,
       b->peer_note);
    sb(&s, "Same-API peer: on OpenCL devices CLBlast's GEMM at the row's layout "
           "(f16_matmul: X·W^T; f16_matmul_t: dY·W at (M, K, N); f32_matmul as timed), "
           "HGEMM where the device has cl_khr_fp16 and SGEMM always, the faster shown, "
           "timed by OpenCL profiling events (marker to last kernel, median of up to 5 "
           "runs after a warm-up, result checked), with CLBlast's own database "
           "parameters (untuned: Debian ships no clblast_tuner_xgemm): %s. On Vulkan "
           "devices ggml's Vulkan mul_mat (benchmarks/peer_ggml.sh --backend vulkan; "
           "f16/f32 weights, wall clock of a graph compute, submission included): %s.\n\n",
       b->clb_note, b->vk_note);
    if (!o->kernels)
        sb(&s, "Not run (--kernels 0).\n\n");
    sb(&s, "| device | kernel | M,N,K | shape of | GFLOP/s | ggml type | ggml CPU GFLOP/s | "
           "qvac ÷ ggml CPU | same-API peer | peer GFLOP/s | qvac ÷ peer | note |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < b->nk; i++) {
        const krow *r = &b->kr[i];
        char g1[32] = "-", g2[32] = "-", g3[32] = "-";
        if (!isnan(r->gflops))
            snprintf(g1, sizeof g1, "%.1f%s", r->gflops, r->tuned ? "" : " (default)");
        if (!isnan(r->peer_gflops))
            snprintf(g2, sizeof g2, "%.1f", r->peer_gflops);
        if (!isnan(r->peer_gflops) && !isnan(r->gflops))
            snprintf(g3, sizeof g3, "%.2fx", r->gflops / r->peer_gflops);
        const char *pw = "-";
        double pv = same_api(b, r, &pw);
        char p1[48] = "-", p2[32] = "-", p3[32] = "-";
        if (!isnan(pv)) {
            snprintf(p1, sizeof p1, "%s%s%s", pw, strcmp(pw, "ggml-vulkan") ? "" : " ",
                     strcmp(pw, "ggml-vulkan") ? "" : r->peer_type);
            snprintf(p2, sizeof p2, "%.1f", pv);
            if (!isnan(r->gflops))
                snprintf(p3, sizeof p3, "%.2fx", r->gflops / pv);
        }
        char nt[400];
        snprintf(nt, sizeof nt, "%s%s%s%s%s", r->note, r->note[0] && r->clb_note[0] ? "; " : "",
                 r->clb_note, (r->note[0] || r->clb_note[0]) && r->vk_note[0] ? "; " : "",
                 r->vk_note);
        sb(&s, "| %s | %s%s | %d,%d,%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
           r->device, r->kernel, strcmp(r->kernel, "ternary_matmul") ? "" : " + quantize_act",
           r->m, r->n, r->k, r->origin, g1, r->peer_type[0] ? r->peer_type : "-", g2,
           g3, p1, p2, p3, nt);
    }
    sb(&s, "\nternary ÷ 16-bit GFLOP/s at the same shape (what ternary gains in "
           "speed; its gain in memory is in the table above):\n\n"
           "| device | M,N,K | qvac ternary_matmul ÷ f16_matmul | ggml TQ2_0 ÷ F16 |\n"
           "|---|---|---|---|\n");
    for (int i = 0; i < b->nk; i++) {
        const krow *t = &b->kr[i];
        if (strcmp(t->kernel, "ternary_matmul"))
            continue;
        for (int k2 = 0; k2 < b->nk; k2++) {
            const krow *h = &b->kr[k2];
            if (strcmp(h->kernel, "f16_matmul") || strcmp(h->device, t->device) ||
                h->m != t->m || h->n != t->n || h->k != t->k)
                continue;
            char a[32] = "-", c[32] = "-";
            if (!isnan(t->gflops) && !isnan(h->gflops))
                snprintf(a, sizeof a, "%.2f", t->gflops / h->gflops);
            if (!isnan(t->peer_gflops) && !isnan(h->peer_gflops))
                snprintf(c, sizeof c, "%.2f", t->peer_gflops / h->peer_gflops);
            sb(&s, "| %s | %d,%d,%d | %s | %s |\n", t->device, t->m, t->n, t->k, a, c);
        }
    }
    sb(&s, "\nOn CPU-backed devices (PoCL, lavapipe) qvac and ggml share the same "
           "cores; ratios measured side by side in one run are the result.\n");
    snprintf(path, sizeof path, "%s.md", b->base);
    if (strcmp(path, o->out))
        snprintf(path, sizeof path, "%s", o->out);
    rc |= s.oom ? -1 : write_file(path, s.p, s.n);
    free(s.p);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

static qv_status make_model(int i, model_rec *mr, qv_model **m, qv_err *err)
{
    *m = NULL;
    if (i == 0 && access(BUILTIN_PATH, R_OK) == 0) {
        qv_status s = qv_model_load(BUILTIN_PATH, m, err);
        if (!s) {
            mr->source = "loaded from " BUILTIN_PATH;
            mr->cfg = (*m)->cfg;
        }
        return s;
    }
    mr->source = i == 0 ? "synthetic (" BUILTIN_PATH " absent)" : "synthetic";
    return qv_model_init_synthetic(&models[i].cfg, 1234 + (uint64_t)i, m, err);
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return 0;
}

int main(int argc, char **argv)
{
    static bench B;
    bench *b = &B;
    if (parse_opts(argc, argv, &b->o)) {
        usage(stderr);
        return 2;
    }
    opts *o = &b->o;
    unsigned targets = 0;
    qv_err err = {0};
    if (qv_lin_parse_targets(o->targets, &targets, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 2;
    }
    for (const char *p = o->models; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < N_MODELS; i++)
            ok |= strlen(models[i].key) == len && !strncmp(models[i].key, p, len);
        if (!ok) {
            fprintf(stderr, "bench_train: unknown model '%.*s' (builtin, 700m, 1.3b, 3b, "
                            "1.3b-mem)\n",
                    (int)len, p);
            return 2;
        }
        p = c ? c + 1 : p + len;
    }
    snprintf(b->base, sizeof b->base, "%s", o->out);
    size_t bl = strlen(b->base);
    if (bl > 3 && !strcmp(b->base + bl - 3, ".md"))
        b->base[bl - 3] = 0;
    size_t cl = 0;
    for (int i = 0; i < argc && cl < sizeof b->cmdline - 1; i++)
        cl += (size_t)snprintf(b->cmdline + cl, sizeof b->cmdline - cl, "%s%s",
                               i ? " " : "", argv[i]);
    time_t now = time(NULL);
    strftime(b->started, sizeof b->started, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    b->t0 = now_s();
    b->deadline = b->t0 + o->budget_min * 60.0;

    qv_devlist *list = NULL;
    if (qv_devlist_open(&list, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    b->ref = qv_devlist_find(list, "ref");
    for (size_t i = 0; i < list->n && b->nd < MAX_DEVS; i++) {
        qv_device *d = list->dev[i];
        if (o->devices ? in_list(o->devices, d->info.id) : strcmp(d->info.backend, "ref"))
            b->devs[b->nd++] = d;
    }
    if (!b->nd || !b->ref) {
        fprintf(stderr, "bench_train: no device selected, or no reference device "
                "(found:");
        for (size_t i = 0; i < list->n; i++)
            fprintf(stderr, " %s", list->dev[i]->info.id);
        fprintf(stderr, ")\n");
        qv_devlist_destroy(&list);
        return 1;
    }
    qv_tune_cache *cache = NULL;
    if (mkdirs(o->db) || qv_tune_cache_open(o->db, 0, 5000, &cache, &err)) {
        fprintf(stderr, "bench_train: tune cache %s: %s\n", o->db,
                err.msg[0] ? err.msg : strerror(errno));
        qv_devlist_destroy(&list);
        return 1;
    }
    mkdirs(o->out);

    /* synthetic token data: pseudo-random printable bytes */
    size_t nbytes = 1 << 17;
    char *text = malloc(nbytes);
    qv_dataset *ds = NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; text && i < nbytes; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        text[i] = (char)(' ' + (int)(x % 95));
    }
    if (!text || qv_dataset_from_text(text, nbytes, "synthetic", &ds, &err)) {
        fprintf(stderr, "bench_train: %s\n", text ? err.msg : "out of memory");
        free(text);
        qv_tune_cache_destroy(&cache);
        qv_devlist_destroy(&list);
        return 1;
    }
    free(text);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (int i = 0; i < N_MODELS; i++) {
        b->mr[i].selected = in_list(o->models, models[i].key);
        b->mr[i].cfg = models[i].cfg;
        qv_model_count(&b->mr[i].cfg, &b->mr[i].ternary_params, &b->mr[i].other_params);
    }

    /* 1-2: the kernel table's rows, ggml's figures, then qvac's */
    if (o->kernels) {
        for (int d = 0; d < b->nd; d++) {
            for (int kk = 0; kk < N_KERNELS; kk++) {
                add_krow(b, b->devs[d], kernel_names[kk], "reference", 512, 2048, 2048);
                add_krow(b, b->devs[d], kernel_names[kk], "reference", 1, 2048, 2048);
            }
            for (int i = 0; i < N_MODELS; i++) {
                if (!b->mr[i].selected || models[i].mem_only)
                    continue;
                int bt, sq;
                run_shape(b, i, b->devs[d], &bt, &sq);
                for (int l = 0; l < QV_LIN_COUNT; l++) {
                    int32_t N, K;
                    qv_model_lin_shape(&models[i].cfg, (qv_lin_id)l, &N, &K);
                    for (int kk = 0; kk < N_KERNELS; kk++)
                        add_krow(b, b->devs[d], kernel_names[kk], models[i].key,
                                 bt * sq, N, K);
                }
            }
        }
        double t = now_s();
        run_peer(b);
        b->phase_s[0] = now_s() - t, t = now_s();
        run_peer_vk(b);
        b->phase_s[1] = now_s() - t, t = now_s();
        fprintf(stderr, "kernels: %d rows\n", b->nk);
        time_krows(b, cache, o->budget_min * 60.0 * 0.3);
        b->phase_s[2] = now_s() - t, t = now_s();
        run_clblast(b, o->budget_min * 60.0 * 0.1);
        b->phase_s[3] = now_s() - t;
    } else {
        snprintf(b->peer_note, sizeof b->peer_note, "not run (--kernels 0)");
        snprintf(b->vk_note, sizeof b->vk_note, "not run (--kernels 0)");
        snprintf(b->clb_note, sizeof b->clb_note, "not run (--kernels 0)");
    }
    write_all(b, 0);

    /* 3: training */
    int rc = 0;
    for (int i = 0; i < N_MODELS && !g_stop; i++) {
        if (!b->mr[i].selected)
            continue;
        fprintf(stderr, "model %s: making it (%.0f s left)\n", models[i].label, left_s(b));
        qv_model *m = NULL;
        double tm = now_s();
        qv_status ms = make_model(i, &b->mr[i], &m, &err);
        b->phase_s[4] += now_s() - tm;
        if (ms) {
            b->mr[i].state = RUN_FAILED;
            snprintf(b->mr[i].note, sizeof b->mr[i].note, "model: %.500s", err.msg);
            note(b, "%s: %s", models[i].label, b->mr[i].note);
            continue;
        }
        qv_model_count(&b->mr[i].cfg, &b->mr[i].ternary_params, &b->mr[i].other_params);
        for (int d = 0; d < b->nd && !g_stop; d++)
            for (int w = 0; w < 2 && !g_stop && !(models[i].mem_only && d); w++) {
                fprintf(stderr, "  %s on %s, %s weights (%.0f s left)\n", models[i].label,
                        b->devs[d]->info.id, qv_weights_name((qv_weights)w), left_s(b));
                run_rec *r = &b->mr[i].run[d][w];
                do_run(b, i, d, w, m, ds, targets, cache);
                char pb[32];
                fmt_bytes(r->r.mem.peak, pb, sizeof pb);
                fprintf(stderr, "    %s: %.2f tokens/s steady, MFU %.1f%%, peak %s, "
                        "%.1f s %s\n", state_name(r->state), r->tps_steady,
                        100 * r->mfu, pb, r->wall_s, r->note);
                if (write_all(b, 0))
                    rc = 1;
            }
        b->mr[i].state = RUN_DONE;
        qv_model_free(&m);
    }
    if (write_all(b, !g_stop))
        rc = 1;
    else
        fprintf(stderr, "wrote %s, %s.json, %s-tokens.svg, %s-memory.svg (%.0f s)\n",
                o->out, b->base, b->base, b->base, now_s() - b->t0);
    qv_dataset_free(ds);
    qv_tune_cache_destroy(&cache);
    qv_devlist_destroy(&list);
    return g_stop ? 130 : rc;
}
