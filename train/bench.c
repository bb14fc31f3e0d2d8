/* train/bench.c — the standard ternary-vs-16-bit comparison of one device
 * (train/bench.h). */
#include "train/bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/embedded.h"
#include "formats/dataset.h"
#include "train/mfu.h"
#include "train/model.h"
#include "train/net.h"
#include "train/train.h"

#define BUILTIN_MODEL "model/qvac-tiny.gguf"
#define MAX_STEPS 64

static void blog(const qv_bench_opts *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->log_user, line);
}

typedef struct step_clock {
    double end[MAX_STEPS + 1];
    int n;
    const qv_bench_opts *o;
} step_clock;

static int on_progress(void *user, const qv_train_progress *p)
{
    step_clock *c = user;
    if (!strcmp(p->phase, "train") && p->step >= 1 && p->step <= MAX_STEPS &&
        p->step > c->n) {
        c->end[p->step] = p->elapsed_s;
        c->n = (int)p->step;
    }
    return c->o->stop && *c->o->stop ? 1 : 0;
}

/* Pseudo-random printable bytes: the same every run. */
static qv_status make_data(qv_dataset **ds, qv_err *err)
{
    size_t n = 1 << 17;
    char *text = malloc(n);
    if (!text)
        return qv_fail(err, QV_ERR_NOMEM, "bench: out of memory for the data");
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        text[i] = (char)(' ' + (int)(x % 95));
    }
    qv_status s = qv_dataset_from_text(text, n, "bench data", ds, err);
    free(text);
    return s;
}

static qv_status make_model(int i, qv_model **m, qv_err *err)
{
    if (i == 0) {
        const qv_embedded_file *f = qv_embedded_find(BUILTIN_MODEL);
        if (!f)
            return qv_fail(err, QV_ERR_NOT_FOUND, "bench: this build has no built-in "
                           "model (data/model/qvac-tiny.gguf was missing when it was "
                           "built); use --model 700m, 1.3b or 3b");
        return qv_model_load_mem(f->data, f->size, "built-in model", m, err);
    }
    return qv_model_init_synthetic(&qv_bench_models[i].cfg, 1234 + (uint64_t)i, m, err);
}

static qv_status run_mode(qv_device *dev, const qv_bench_opts *o, int mi, qv_model *m,
                          const qv_dataset *ds, qv_weights w, qv_bench_result *r,
                          qv_err *err)
{
    qv_bench_mode *bm = &r->mode[w];
    qv_status s = QV_OK;
    if (o->ref && o->cache && dev != o->ref) {
        qv_train_shape_opts so = {.weights = w, .batch = r->batch, .seq = r->seq,
                                  .rank = 16, .targets = QV_TARGETS_DEFAULT,
                                  .head_f16 = qv_model_head_f16(m),
                                  .max_alloc = dev->info.max_alloc_bytes};
        qv_train_tune_opts to = {.budget_evals = o->tune_evals ? o->tune_evals : 4,
                                 .stop = o->stop};
        qv_train_tune_result tr;
        blog(o, "bench %s: tuning the %s kernels at the model's shapes", dev->info.id,
             qv_weights_name(w));
        s = qv_train_tune(o->cache, dev, o->ref, m, &so, &to, &tr, err);
        if (s)
            return s;
        r->tune_s += tr.seconds;
    }
    qv_train_opts t;
    qv_train_opts_default(&t);
    t.weights = w;
    t.steps = r->steps;
    t.warmup = 0;
    t.batch = r->batch;
    t.seq = r->seq;
    t.accum = 1;
    t.eval_batches = 1;
    t.cache = o->cache;
    t.checkpoint = qv_bench_models[mi].ckpt;
    step_clock c = {.o = o};
    t.progress = on_progress;
    t.progress_user = &c;
    t.stop = o->stop;
    blog(o, "bench %s: %d steps of %d x %d tokens, %s weights", dev->info.id, r->steps,
         r->batch, r->seq, qv_weights_name(w));
    qv_train_result tr;
    s = qv_train_run(dev, m, ds, NULL, &t, &tr, err);
    free(tr.losses);
    if (s)
        return s;
    if (tr.interrupted)
        return qv_fail(err, QV_ERR_INVALID, "bench on %s: interrupted", dev->info.id);
    bm->steps = c.n;
    int64_t T = (int64_t)r->batch * r->seq;
    double secs = c.n >= 2 ? c.end[c.n] - c.end[1] : c.n == 1 ? c.end[1] : 0;
    int steady = c.n >= 2 ? c.n - 1 : c.n;
    bm->tokens_per_s = secs > 0 ? (double)T * steady / secs : 0;
    bm->peak_bytes = tr.mem.peak;
    for (int g = 0; g < QV_MEM_NTAGS; g++)
        bm->by_tag[g] = tr.mem.by_tag[g];
    qv_err e2 = {0};
    if (!qv_gemm_peak(dev, o->cache, &m->cfg, w, (int32_t)T, &bm->gemm_gflops, &e2))
        bm->mfu = qv_mfu(qv_step_flops(&m->cfg, QV_TARGETS_DEFAULT, 16, T, r->seq, 0) *
                             steady, secs, bm->gemm_gflops);
    else
        blog(o, "bench %s: no MFU: %s", dev->info.id, e2.msg);
    if (w == QV_WEIGHTS_TERNARY &&
        !qv_gemm_peak(dev, NULL, &m->cfg, w, (int32_t)T, &r->default_gflops, &e2) &&
        r->default_gflops > 0)
        r->tuned_vs_default = bm->gemm_gflops / r->default_gflops;
    return QV_OK;
}

qv_status qv_bench_run(qv_device *dev, const qv_bench_opts *o, qv_bench_result *r,
                       qv_err *err)
{
    memset(r, 0, sizeof *r);
    if (!dev || !o || !r)
        return qv_fail(err, QV_ERR_INVALID, "bench: no device or options");
    int mi = qv_bench_model_index(o->model);
    if (mi < 0)
        return qv_bench_defaults(o->model, &r->batch, &r->seq, &r->steps, err);
    r->batch = o->batch > 0 ? o->batch : qv_bench_models[mi].batch;
    r->seq = o->seq > 0 ? o->seq : qv_bench_models[mi].seq;
    r->steps = o->steps > 0 ? o->steps : qv_bench_models[mi].steps;
    if (r->steps > MAX_STEPS)
        return qv_fail(err, QV_ERR_INVALID, "bench: at most %d steps", MAX_STEPS);
    const qv_device_info *in = &dev->info;
    snprintf(r->device, sizeof r->device, "%s", in->id);
    snprintf(r->backend, sizeof r->backend, "%s", in->backend);
    snprintf(r->vendor, sizeof r->vendor, "%s", in->vendor);
    snprintf(r->name, sizeof r->name, "%s", in->name);
    snprintf(r->driver, sizeof r->driver, "%s", in->driver);
    snprintf(r->fingerprint, sizeof r->fingerprint, "%s", in->fingerprint);
    snprintf(r->model, sizeof r->model, "%s", qv_bench_models[mi].name);
    snprintf(r->version, sizeof r->version, "%s", QV_VERSION);
    qv_model *m = NULL;
    qv_dataset *ds = NULL;
    qv_status s = make_model(mi, &m, err);
    if (!s)
        s = make_data(&ds, err);
    for (int w = 0; w < 2 && !s; w++)
        s = run_mode(dev, o, mi, m, ds, (qv_weights)w, r, err);
    qv_dataset_free(ds);
    qv_model_free(&m);
    r->measured_ms = (int64_t)time(NULL) * 1000;
    return s;
}

