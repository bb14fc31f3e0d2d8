/* benchmarks/bench_train.c — LoRA fine-tuning with ternary weights against
 * the same fine-tune with 16-bit weights: throughput and peak device memory.
 *
 * For every model (the built-in one, and synthetic models with the layer
 * shapes of the BitNet b1.58 checkpoints of about 700M, 1.3B and 3B
 * parameters) and every device (the reference excepted by default), the
 * same short LoRA fine-tune runs twice, one after the other: with the base
 * weights ternary (QV_WEIGHTS_TERNARY) and in IEEE half (QV_WEIGHTS_F16).
 * Each run records tokens/s and the device's peak bytes with its breakdown
 * by category (qv_train_result.mem). A run predicted, after its first step,
 * to take longer than --max-seconds is stopped and recorded as skipped.
 * Models run one at a time and are freed before the next is made.
 *
 * Writes a Markdown report, rewritten (FILE.tmp, then renamed) after every
 * model, so that an interrupted run leaves the models completed so far.
 *
 * usage: bench_train [--out FILE] [--devices LIST] [--models LIST]
 *                    [--seq N] [--steps N] [--rank N] [--targets LIST]
 *                    [--max-seconds S] */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "formats/dataset.h"
#include "kernels/backend.h"
#include "kernels/ternary.h"
#include "train/model.h"
#include "train/net.h"
#include "train/train.h"

#define DEFAULT_OUT "benchmarks/reports/training.md"
#define BUILTIN_PATH "data/model/qvac-tiny.gguf"
#define MAX_DEVS 8

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
    const char *key;   /* --models name */
    const char *label; /* report name */
    const char *like;  /* what its shape follows */
    qv_model_config cfg;
} bench_model;

#define BITNET_CFG(D, L, H, F)                                                 \
    {.vocab = 32002, .dim = (D), .n_layers = (L), .n_heads = (H),             \
     .n_kv_heads = (H), .ffn_dim = (F), .ctx = 2048, .rope_theta = 10000.0f,  \
     .norm_eps = 1e-5f, .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1}

static const bench_model models[] = {
    {"builtin", "built-in", "qvac-tiny (" BUILTIN_PATH ")",
     {.vocab = 258, .dim = 256, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
      .ffn_dim = 512, .ctx = 2048, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
      .act = QV_ACT_RELU2, .sub_norm = 1, .tied = 0}},
    {"700m", "~700M", "1bitLLM/bitnet_b1_58-large", BITNET_CFG(1536, 24, 16, 4096)},
    {"1.3b", "~1.3B", "1bitLLM/bitnet_b1_58-xl", BITNET_CFG(2048, 24, 32, 5460)},
    {"3b", "~3B", "1bitLLM/bitnet_b1_58-3B", BITNET_CFG(3200, 26, 32, 8640)},
};
#define N_MODELS ((int)(sizeof models / sizeof models[0]))

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *out, *devices, *models, *targets;
    int seq, steps, rank;
    double max_seconds;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_train [--out FILE] [--devices LIST] [--models LIST]\n"
        "                   [--seq N] [--steps N] [--rank N] [--targets LIST]\n"
        "                   [--max-seconds S]\n\n"
        "Runs the same short LoRA fine-tune with ternary and with f16 base weights,\n"
        "one after the other, for each model on each device, and writes a Markdown\n"
        "report of tokens/s and peak device memory by category.\n\n"
        "  --out FILE        report (default %s)\n"
        "  --devices LIST    device ids, comma-separated (default: every device but ref)\n"
        "  --models LIST     of builtin,700m,1.3b,3b (default: all)\n"
        "  --seq N           tokens per sequence (default 16; batch is 1)\n"
        "  --steps N         optimizer steps per run (default 2)\n"
        "  --rank N          LoRA rank (default 16)\n"
        "  --targets LIST    LoRA targets, e.g. q,v or all (default all)\n"
        "  --max-seconds S   stop a run predicted after its first step to take\n"
        "                    longer than S seconds of training (default 600)\n",
        DEFAULT_OUT);
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
    o->targets = "all";
    o->seq = 16;
    o->steps = 2;
    o->rank = 16;
    o->max_seconds = 600;
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
        if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--devices"))
            o->devices = v;
        else if (!strcmp(a, "--models"))
            o->models = v;
        else if (!strcmp(a, "--targets"))
            o->targets = v;
        else if (!strcmp(a, "--seq")) {
            if (parse_int(v, 2, 2048, &o->seq)) {
                fprintf(stderr, "bench_train: --seq needs an integer in 2..2048\n");
                return -1;
            }
        } else if (!strcmp(a, "--steps")) {
            if (parse_int(v, 1, 1000, &o->steps)) {
                fprintf(stderr, "bench_train: --steps needs an integer in 1..1000\n");
                return -1;
            }
        } else if (!strcmp(a, "--rank")) {
            if (parse_int(v, 1, 1024, &o->rank)) {
                fprintf(stderr, "bench_train: --rank needs an integer in 1..1024\n");
                return -1;
            }
        } else if (!strcmp(a, "--max-seconds")) {
            char *end = NULL;
            o->max_seconds = strtod(v, &end);
            if (*end || !(o->max_seconds > 0)) {
                fprintf(stderr, "bench_train: --max-seconds needs a positive number\n");
                return -1;
            }
        } else {
            fprintf(stderr, "bench_train: unknown option '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

/* Is name one of the comma-separated items of list? (NULL list: yes.) */
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

/* ---- runs --------------------------------------------------------------- */

enum { RUN_NOT_RUN = 0, RUN_DONE, RUN_SKIPPED, RUN_FAILED };

typedef struct run_rec {
    int state;
    char note[600];
    qv_train_result r;
    double step_end[2]; /* elapsed training time at the end of steps 1, 2 */
    double wall_s;      /* the whole run: upload, evals, training */
} run_rec;

typedef struct model_rec {
    int selected, state; /* state: RUN_NOT_RUN / RUN_DONE / RUN_FAILED */
    char note[600];
    const char *source;  /* "loaded from ..." or "synthetic" */
    qv_model_config cfg;
    uint64_t ternary_params, other_params;
    uint64_t lin_ternary_bytes, lin_f16_bytes, f32_bytes; /* analytic:
        f32_bytes is the rest of the frozen model as a fine-tune holds it
        (embedding and head in f16, norms in f32) */
    run_rec run[MAX_DEVS][2];
} model_rec;

typedef struct guard {
    const opts *o;
    run_rec *rec;
    double predicted;
} guard;

static int on_progress(void *user, const qv_train_progress *p)
{
    guard *g = user;
    if (strcmp(p->phase, "train") || p->step < 1)
        return g_stop ? 1 : 0;
    if (p->step <= 2)
        g->rec->step_end[p->step - 1] = p->elapsed_s;
    fprintf(stderr, "    step %lld/%lld: %.1f s, %.2f tokens/s\n",
            (long long)p->step, (long long)p->steps, p->elapsed_s, p->tokens_per_s);
    if (p->step == 1 && p->steps > 1) {
        g->predicted = p->elapsed_s * (double)p->steps;
        if (g->predicted > g->o->max_seconds)
            return 1;
    }
    return g_stop ? 1 : 0;
}

static void model_bytes(model_rec *mr)
{
    const qv_model_config *c = &mr->cfg;
    qv_model_count(c, &mr->ternary_params, &mr->other_params);
    mr->lin_ternary_bytes = mr->lin_f16_bytes = 0;
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        mr->lin_ternary_bytes += (uint64_t)c->n_layers * qv_ternary_bytes(N, K);
        mr->lin_f16_bytes += (uint64_t)c->n_layers * (uint64_t)N * (uint64_t)K * 2;
    }
    uint64_t emb = (uint64_t)c->vocab * (uint64_t)c->dim * (c->tied ? 1u : 2u);
    mr->f32_bytes = emb * 2 + (mr->other_params - emb) * 4;
}

static void run_one(qv_device *dev, qv_model *m, const qv_dataset *ds,
                    const opts *o, unsigned targets, qv_weights w, run_rec *rec)
{
    qv_train_opts to;
    qv_train_opts_default(&to);
    to.weights = w;
    to.rank = o->rank;
    to.alpha = 2.0f * (float)o->rank;
    to.targets = targets;
    to.steps = o->steps;
    to.warmup = 0;
    to.batch = 1;
    to.seq = o->seq;
    to.accum = 1;
    to.eval_batches = 1;
    to.out_dir = NULL;
    to.cache = NULL;
    guard g = {o, rec, 0.0};
    to.progress = on_progress;
    to.progress_user = &g;
    to.stop = &g_stop;
    qv_err err = {0};
    double t0 = now_s();
    qv_status s = qv_train_run(dev, m, ds, NULL, &to, &rec->r, &err);
    rec->wall_s = now_s() - t0;
    if (s) {
        rec->state = RUN_FAILED;
        snprintf(rec->note, sizeof rec->note, "failed: %s", err.msg);
    } else if (rec->r.interrupted) {
        rec->state = RUN_SKIPPED;
        if (g_stop)
            snprintf(rec->note, sizeof rec->note, "interrupted");
        else
            snprintf(rec->note, sizeof rec->note,
                     "skipped: step 1 took %.0f s, %d steps predicted %.0f s > "
                     "--max-seconds %.0f", rec->step_end[0], o->steps,
                     g.predicted, o->max_seconds);
    } else {
        rec->state = RUN_DONE;
    }
    free(rec->r.losses);
    rec->r.losses = NULL;
}

/* ---- report ------------------------------------------------------------- */

static void fmt_bytes(uint64_t b, char *buf, size_t n)
{
    const double k = 1024.0;
    if (b < 1024)
        snprintf(buf, n, "%llu B", (unsigned long long)b);
    else if (b < 1024ull * 1024)
        snprintf(buf, n, "%.1f KiB", (double)b / k);
    else if (b < 1024ull * 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", (double)b / (k * k));
    else
        snprintf(buf, n, "%.2f GiB", (double)b / (k * k * k));
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

/* tokens/s of the last step alone (step 2 when it ran), else 0 */
static double steady_tps(const run_rec *r, const opts *o)
{
    if (o->steps < 2 || r->r.steps_done < 2)
        return 0.0;
    double dt = r->step_end[1] - r->step_end[0];
    return dt > 0 ? (double)o->seq / dt : 0.0;
}

static const char *run_state_cell(const run_rec *r)
{
    switch (r->state) {
    case RUN_SKIPPED: return "skipped";
    case RUN_FAILED: return "failed";
    case RUN_NOT_RUN: return "not run";
    default: return "";
    }
}

/* A run that built its net has its memory figures (one stopped by the
 * time guard was built and trained a step); a failed or interrupted one
 * may not. */
static int has_mem(const run_rec *r)
{
    return r->state == RUN_DONE ||
           (r->state == RUN_SKIPPED && strcmp(r->note, "interrupted"));
}

static int write_report(const opts *o, const char *cmdline, const char *started,
                        qv_device **devs, int nd, model_rec *mr, int final)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "bench_train: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    char tl[128];
    unsigned tm = 0;
    qv_lin_parse_targets(o->targets, &tm, NULL);
    qv_lin_format_targets(tm, tl, sizeof tl);

    fprintf(f, "# Training: ternary vs 16-bit weights\n\n");
    fprintf(f, "Command:\n\n    %s\n\n", cmdline);
    fprintf(f, "- Date: %s%s\n", started, final ? "" : " (incomplete: still running "
                                                      "or interrupted)");
    fprintf(f, "- Machine: %s %s, %ld CPU cores, %.1f GiB memory\n", u.sysname,
            u.machine, ncpu, (double)pages * (double)psz / (1024.0 * 1024 * 1024));
    fprintf(f, "- Devices:\n");
    for (int d = 0; d < nd; d++)
        fprintf(f, "  - `%s`: %s (%s, driver %s)%s\n", devs[d]->info.id,
                devs[d]->info.name, devs[d]->info.vendor, devs[d]->info.driver,
                devs[d]->info.is_cpu ? ", runs on the host CPU" : "");
    fprintf(f, "- Fine-tune: LoRA rank %d, alpha %d, targets %s; batch 1, seq %d, "
               "%d optimizer steps, eval_batches 1 (before and after); untuned "
               "(default) kernel configurations; synthetic token data "
               "(qv_dataset_from_text over pseudo-random bytes).\n",
            o->rank, 2 * o->rank, tl, o->seq, o->steps);
    fprintf(f, "- Each model runs ternary then f16 on one device, then the next "
               "device; one run at a time. A run predicted after step 1 to "
               "train longer than %.0f s is stopped and marked skipped.\n\n",
            o->max_seconds);
    fprintf(f, "On CPU-backed devices (PoCL, lavapipe) absolute times mean little; "
               "the ratios, measured side by side in one run, are the result.\n\n");

    fprintf(f, "## Models\n\n");
    fprintf(f, "| model | shape of | source | dim | layers | heads | kv heads | ffn | "
               "vocab | ternary params | other params | BitLinear bytes ternary / f16 "
               "| other bytes (emb + head f16, norms f32) |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!mr[i].selected)
            continue;
        const qv_model_config *c = &mr[i].cfg;
        char tp[32], op[32], b1[32], b2[32], b3[32];
        fmt_params(mr[i].ternary_params, tp, sizeof tp);
        fmt_params(mr[i].other_params, op, sizeof op);
        fmt_bytes(mr[i].lin_ternary_bytes, b1, sizeof b1);
        fmt_bytes(mr[i].lin_f16_bytes, b2, sizeof b2);
        fmt_bytes(mr[i].f32_bytes, b3, sizeof b3);
        fprintf(f, "| %s | %s | %s | %d | %d | %d | %d | %d | %d | %s | %s | %s / %s | %s |\n",
                models[i].label, models[i].like,
                mr[i].source ? mr[i].source : "-", c->dim, c->n_layers,
                c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab, tp, op, b1, b2, b3);
    }
    fprintf(f, "\nBitNet-shaped models: SiLU and a tied output head as in their "
               "configs, plus sub-norms; context 2048. The built-in model: squared "
               "ReLU, sub-norms, untied head.\n\n");

    fprintf(f, "## Throughput\n\n");
    fprintf(f, "tokens/s over the training steps (qv_train_result.tokens_per_s; "
               "step 1 includes compiling kernels not yet used on the device), "
               "and the ratio of the last step alone.\n\n");
    fprintf(f, "| model | device | tokens/s ternary | tokens/s f16 | ternary / f16 "
               "| ternary / f16, last step | run wall s ternary / f16 | note |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!mr[i].selected)
            continue;
        for (int d = 0; d < nd; d++) {
            run_rec *t = &mr[i].run[d][0], *h = &mr[i].run[d][1];
            char c1[32] = "-", c2[32] = "-", c3[32] = "-", c4[32] = "-", c5[64];
            if (t->state == RUN_DONE)
                snprintf(c1, sizeof c1, "%.2f", t->r.tokens_per_s);
            else
                snprintf(c1, sizeof c1, "%s", run_state_cell(t));
            if (h->state == RUN_DONE)
                snprintf(c2, sizeof c2, "%.2f", h->r.tokens_per_s);
            else
                snprintf(c2, sizeof c2, "%s", run_state_cell(h));
            if (t->state == RUN_DONE && h->state == RUN_DONE) {
                snprintf(c3, sizeof c3, "%.2fx", t->r.tokens_per_s / h->r.tokens_per_s);
                double a = steady_tps(t, o), b = steady_tps(h, o);
                if (a > 0 && b > 0)
                    snprintf(c4, sizeof c4, "%.2fx", a / b);
            }
            if (t->state && h->state)
                snprintf(c5, sizeof c5, "%.1f / %.1f", t->wall_s, h->wall_s);
            else if (t->state)
                snprintf(c5, sizeof c5, "%.1f / -", t->wall_s);
            else
                snprintf(c5, sizeof c5, "- / -");
            char note[1300] = "";
            if (mr[i].state == RUN_FAILED)
                snprintf(note, sizeof note, "%s", mr[i].note);
            else if (t->note[0] || h->note[0])
                snprintf(note, sizeof note, "%s%s%s%s%s",
                         t->note[0] ? "ternary " : "", t->note,
                         t->note[0] && h->note[0] ? "; " : "",
                         h->note[0] ? "f16 " : "", h->note);
            fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", models[i].label,
                    devs[d]->info.id, c1, c2, c3, c4, c5, note);
        }
    }

    fprintf(f, "\n## Peak device memory\n\n");
    fprintf(f, "Peak bytes of live device buffers over the whole run "
               "(upload, evaluation, training), and the `weights` category at that "
               "peak. `weights` holds the BitLinear weights (2-bit packed codes, or "
               "f16) and the frozen embedding and head (f16) and norms (f32), the "
               "same in both modes. The last column is the reduction of the "
               "BitLinear weights alone (`weights` less that part); its ceiling is "
               "87.5%% (2 bits vs 16; the packed rows' padding and the f16 "
               "rounding of TQ2_0 scales aside). "
               "QVAC Fabric reports 77.8%% less memory than 16-bit overall.\n\n");
    fprintf(f, "| model | device | peak ternary | peak f16 | reduction | weights ternary "
               "| weights f16 | weights reduction | BitLinear reduction |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!mr[i].selected)
            continue;
        for (int d = 0; d < nd; d++) {
            run_rec *t = &mr[i].run[d][0], *h = &mr[i].run[d][1];
            /* a run stopped by the guard still has its memory: the net was
             * built and trained one step */
            int tm_ok = has_mem(t), hm_ok = has_mem(h);
            char p1[32] = "-", p2[32] = "-", r1[32] = "-", w1[32] = "-",
                 w2[32] = "-", r2[32] = "-", r3[32] = "-";
            uint64_t tw = t->r.mem.by_tag[QV_MEM_WEIGHTS], hw = h->r.mem.by_tag[QV_MEM_WEIGHTS];
            if (tm_ok) {
                fmt_bytes(t->r.mem.peak, p1, sizeof p1);
                fmt_bytes(tw, w1, sizeof w1);
            } else
                snprintf(p1, sizeof p1, "%s", run_state_cell(t));
            if (hm_ok) {
                fmt_bytes(h->r.mem.peak, p2, sizeof p2);
                fmt_bytes(hw, w2, sizeof w2);
            } else
                snprintf(p2, sizeof p2, "%s", run_state_cell(h));
            if (tm_ok && hm_ok && h->r.mem.peak && hw) {
                snprintf(r1, sizeof r1, "%.1f%%",
                         100.0 * (1.0 - (double)t->r.mem.peak / (double)h->r.mem.peak));
                snprintf(r2, sizeof r2, "%.1f%%", 100.0 * (1.0 - (double)tw / (double)hw));
                uint64_t f32b = mr[i].f32_bytes;
                if (tw > f32b && hw > f32b)
                    snprintf(r3, sizeof r3, "%.1f%%",
                             100.0 * (1.0 - (double)(tw - f32b) / (double)(hw - f32b)));
            }
            fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    models[i].label, devs[d]->info.id, p1, p2, r1, w1, w2, r2, r3);
        }
    }

    fprintf(f, "\n## Memory by category at the peak\n\n");
    fprintf(f, "| model | device | mode |");
    for (int tg = 0; tg < QV_MEM_NTAGS; tg++)
        fprintf(f, " %s |", qv_mem_tag_name((qv_mem_tag)tg));
    fprintf(f, " total |\n|---|---|---|");
    for (int tg = 0; tg <= QV_MEM_NTAGS; tg++)
        fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!mr[i].selected)
            continue;
        for (int d = 0; d < nd; d++)
            for (int w = 0; w < 2; w++) {
                run_rec *r = &mr[i].run[d][w];
                if (!has_mem(r))
                    continue;
                fprintf(f, "| %s | %s | %s |", models[i].label, devs[d]->info.id,
                        w ? "f16" : "ternary");
                for (int tg = 0; tg < QV_MEM_NTAGS; tg++) {
                    char b[32];
                    fmt_bytes(r->r.mem.by_tag[tg], b, sizeof b);
                    fprintf(f, " %s |", r->r.mem.by_tag[tg] ? b : "0");
                }
                char b[32];
                fmt_bytes(r->r.mem.peak, b, sizeof b);
                fprintf(f, " %s |\n", b);
            }
    }

    fprintf(f, "\n## Loss (sanity check)\n\n");
    fprintf(f, "Training loss on one batch before and after the steps; ternary and f16 "
               "share the same base weights, so they should start alike.\n\n");
    fprintf(f, "| model | device | ternary before / after | f16 before / after |\n");
    fprintf(f, "|---|---|---|---|\n");
    for (int i = 0; i < N_MODELS; i++) {
        if (!mr[i].selected)
            continue;
        for (int d = 0; d < nd; d++) {
            char c[2][64];
            for (int w = 0; w < 2; w++) {
                run_rec *r = &mr[i].run[d][w];
                if (r->state == RUN_DONE)
                    snprintf(c[w], sizeof c[w], "%.4f / %.4f", r->r.train_loss_before,
                             r->r.train_loss_after);
                else
                    snprintf(c[w], sizeof c[w], "%s", run_state_cell(r));
            }
            fprintf(f, "| %s | %s | %s | %s |\n", models[i].label, devs[d]->info.id,
                    c[0], c[1]);
        }
    }
    fprintf(f, "\n");
    if (fclose(f)) {
        fprintf(stderr, "bench_train: cannot write %s\n", tmp);
        return -1;
    }
    if (rename(tmp, o->out)) {
        fprintf(stderr, "bench_train: cannot rename %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    return 0;
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

int main(int argc, char **argv)
{
    opts o;
    if (parse_opts(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    unsigned targets = 0;
    qv_err err = {0};
    if (qv_lin_parse_targets(o.targets, &targets, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 2;
    }
    for (const char *p = o.models; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < N_MODELS; i++)
            ok |= strlen(models[i].key) == len && !strncmp(models[i].key, p, len);
        if (!ok) {
            fprintf(stderr, "bench_train: unknown model '%.*s' (builtin, 700m, 1.3b, 3b)\n",
                    (int)len, p);
            return 2;
        }
        p = c ? c + 1 : p + len;
    }

    /* the command line, for the report */
    char cmdline[2048];
    size_t cl = 0;
    cmdline[0] = 0;
    for (int i = 0; i < argc && cl < sizeof cmdline - 1; i++)
        cl += (size_t)snprintf(cmdline + cl, sizeof cmdline - cl, "%s%s",
                               i ? " " : "", argv[i]);
    char started[64];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));

    qv_devlist *list = NULL;
    if (qv_devlist_open(&list, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    qv_device *devs[MAX_DEVS];
    int nd = 0;
    for (size_t i = 0; i < list->n && nd < MAX_DEVS; i++) {
        qv_device *d = list->dev[i];
        if (o.devices ? in_list(o.devices, d->info.id) : strcmp(d->info.backend, "ref"))
            devs[nd++] = d;
    }
    if (!nd) {
        fprintf(stderr, "bench_train: no device selected (found:");
        for (size_t i = 0; i < list->n; i++)
            fprintf(stderr, " %s", list->dev[i]->info.id);
        fprintf(stderr, ")\n");
        qv_devlist_destroy(&list);
        return 1;
    }

    /* synthetic token data: pseudo-random printable bytes */
    size_t nbytes = 1 << 16;
    char *text = malloc(nbytes);
    if (!text) {
        qv_devlist_destroy(&list);
        return 1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < nbytes; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        text[i] = (char)(' ' + (int)(x % 95));
    }
    qv_dataset *ds = NULL;
    if (qv_dataset_from_text(text, nbytes, "synthetic", &ds, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        free(text);
        qv_devlist_destroy(&list);
        return 1;
    }
    free(text);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    static model_rec mr[N_MODELS];
    for (int i = 0; i < N_MODELS; i++) {
        mr[i].selected = in_list(o.models, models[i].key);
        mr[i].cfg = models[i].cfg;
        model_bytes(&mr[i]);
    }
    int rc = 0;
    double t_all = now_s();
    for (int i = 0; i < N_MODELS && !g_stop; i++) {
        if (!mr[i].selected)
            continue;
        fprintf(stderr, "model %s: making it\n", models[i].label);
        qv_model *m = NULL;
        double tm0 = now_s();
        if (make_model(i, &mr[i], &m, &err)) {
            mr[i].state = RUN_FAILED;
            snprintf(mr[i].note, sizeof mr[i].note, "model: %s", err.msg);
            fprintf(stderr, "  %s\n", mr[i].note);
            continue;
        }
        model_bytes(&mr[i]);
        fprintf(stderr, "  made in %.1f s\n", now_s() - tm0);
        for (int d = 0; d < nd && !g_stop; d++)
            for (int w = 0; w < 2 && !g_stop; w++) {
                fprintf(stderr, "  %s on %s, %s weights (%.0f s so far)\n",
                        models[i].label, devs[d]->info.id,
                        qv_weights_name((qv_weights)w), now_s() - t_all);
                run_rec *r = &mr[i].run[d][w];
                run_one(devs[d], m, ds, &o, targets, (qv_weights)w, r);
                char b[32];
                fmt_bytes(r->r.mem.peak, b, sizeof b);
                fprintf(stderr, "    %s: %.2f tokens/s, peak %s, %.1f s %s\n",
                        r->state == RUN_DONE ? "done" : "stopped",
                        r->r.tokens_per_s, b, r->wall_s, r->note);
            }
        mr[i].state = RUN_DONE;
        qv_model_free(&m);
        if (write_report(&o, cmdline, started, devs, nd, mr, 0))
            rc = 1;
    }
    if (write_report(&o, cmdline, started, devs, nd, mr, !g_stop))
        rc = 1;
    else
        fprintf(stderr, "wrote %s (%.0f s)\n", o.out, now_s() - t_all);
    qv_dataset_free(ds);
    qv_devlist_destroy(&list);
    return g_stop ? 130 : rc;
}
