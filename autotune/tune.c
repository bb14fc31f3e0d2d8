/* autotune/tune.c — see tune.h. */
#include "autotune/tune.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const qv_timing_opts qv_timing_default = {
    .warmup = 1,
    .min_reps = 3,
    .max_reps = 50,
    .min_total_ns = 2e7,  /* 20 ms of device time */
    .timeout_ns = 5e9,    /* 5 s for one launch */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

qv_status qv_time_config(qv_instance *in, const qv_config *c,
                         const qv_timing_opts *t, double *median_ns,
                         qv_err *err)
{
    if (!t)
        t = &qv_timing_default;
    const qv_kernel_decl *k = in->k;
    qv_status st;
    for (int w = 0; w < t->warmup; w++) {
        uint64_t ns = 0;
        if ((st = qv_launch(in->dev, k->name, c, in->args, k->n_args, &ns, err)))
            return st;
        if ((double)ns > t->timeout_ns)
            return qv_fail(err, QV_ERR_DEVICE,
                           "timeout: one launch took %.0f ms (limit %.0f ms)",
                           (double)ns / 1e6, t->timeout_ns / 1e6);
    }
    int cap = t->max_reps > 0 ? t->max_reps : 1;
    double *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return qv_fail(err, QV_ERR_NOMEM, "autotune: out of host memory");
    double total = 0;
    int n = 0;
    while (n < cap && (n < t->min_reps || total < t->min_total_ns)) {
        uint64_t ns = 0;
        if ((st = qv_launch(in->dev, k->name, c, in->args, k->n_args, &ns, err))) {
            free(v);
            return st;
        }
        if ((double)ns > t->timeout_ns) {
            free(v);
            return qv_fail(err, QV_ERR_DEVICE,
                           "timeout: one launch took %.0f ms (limit %.0f ms)",
                           (double)ns / 1e6, t->timeout_ns / 1e6);
        }
        v[n++] = (double)ns;
        total += (double)ns;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *median_ns = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    if (*median_ns <= 0)
        *median_ns = 1; /* a timer with coarse resolution: never report 0 */
    free(v);
    return QV_OK;
}

static int m_class(int32_t M) { return M <= 1 ? 1 : M < 128 ? 64 : 256; }

static int uses(const qv_kernel_decl *k, const char *arg)
{
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].kind == QV_ARG_I32 && !strcmp(k->args[i].name, arg))
            return 1;
    return 0;
}

void qv_tune_bucket(const qv_kernel_decl *k, qv_shape s, char *buf, size_t n,
                    qv_shape *at)
{
    qv_shape t = s;
    t.M = m_class(s.M);
    if (!uses(k, "N"))
        t.N = 0;
    if (!uses(k, "R"))
        t.R = 0;
    snprintf(buf, n, "M%d:N%d:K%d:R%d", t.M, t.N, t.K, t.R);
    if (at) {
        *at = t;
        if (!at->N)
            at->N = 1;
        if (!at->R)
            at->R = 1;
    }
}

/* ---- one tuning run ----------------------------------------------------- */

typedef struct tune_run {
    qv_tune_cache *cache;
    qv_device *dev, *ref;
    const qv_kernel_decl *k;
    const qv_space *space;
    qv_instance *inst;
    qv_shape small;
    const qv_tune_opts *o;
    qv_tune_key key;
    qv_tune_progress prog;
    long def_idx;
    double *known;
    qv_status cache_st;
    qv_err cache_err;
} tune_run;

static void record(tune_run *r, const qv_config *c, int ok, double ns,
                   const char *reason)
{
    if (!r->cache || r->cache_st)
        return;
    qv_tune_eval ev;
    memset(&ev, 0, sizeof ev);
    qv_config_format(r->k, c, ev.config, sizeof ev.config);
    ev.ok = ok;
    ev.median_ns = ns;
    snprintf(ev.reason, sizeof ev.reason, "%s", reason ? reason : "");
    r->cache_st = qv_tune_cache_record_eval(r->cache, &r->key, &ev, &r->cache_err);
}

static double cost(void *user, size_t idx)
{
    tune_run *r = user;
    if (r->o->stop && *r->o->stop)
        return NAN;
    const qv_config *c = &r->space->cfg[idx];
    qv_err e;
    qv_verify_result vr;
    char reason[256];
    double ns = INFINITY;
    qv_status st = qv_verify(r->dev, r->ref, r->k, c, r->small, 4242, &vr, &e);
    if (st)
        snprintf(reason, sizeof reason, "%s: %.200s", qv_status_name(st), e.msg);
    else if (!vr.pass)
        snprintf(reason, sizeof reason, "verify: %s off by %.3g (tolerance %.3g)",
                 vr.worst, vr.max_err, vr.tol);
    else if ((st = qv_time_config(r->inst, c, r->o->timing, &ns, &e))) {
        snprintf(reason, sizeof reason, "%s: %.200s", qv_status_name(st), e.msg);
        ns = INFINITY;
    } else
        reason[0] = '\0';
    if (r->o->stop && *r->o->stop)
        return NAN; /* interrupted mid-measurement: do not record */
    record(r, c, !isinf(ns), isinf(ns) ? 0 : ns, reason);
    r->prog.evals++;
    if (isinf(ns))
        r->prog.failures++;
    else if (ns < r->prog.best_ns)
        r->prog.best_ns = ns;
    if ((long)idx == r->def_idx)
        r->prog.default_ns = ns;
    return ns;
}

static int on_progress(void *user, size_t evals, size_t budget, double best)
{
    tune_run *r = user;
    (void)best;
    r->prog.evals = evals;
    r->prog.budget = budget ? budget : r->space->n;
    if (r->o->progress)
        return r->o->progress(r->o->progress_user, &r->prog);
    return 0;
}

static qv_status load_known(tune_run *r, qv_err *err)
{
    qv_tune_eval *ev = NULL;
    size_t n = 0;
    if (!r->cache)
        return QV_OK;
    qv_status st = qv_tune_cache_load_evals(r->cache, &r->key, &ev, &n, err);
    if (st)
        return st;
    for (size_t i = 0; i < n; i++) {
        qv_config c;
        if (qv_config_parse(r->k, ev[i].config, &c, NULL))
            continue;
        long j = qv_space_find(r->space, &c);
        if (j < 0)
            continue;
        r->known[j] = ev[i].ok ? ev[i].median_ns : INFINITY;
        r->prog.evals++;
        if (!ev[i].ok)
            r->prog.failures++;
        else if (r->known[j] < r->prog.best_ns)
            r->prog.best_ns = r->known[j];
        if (j == r->def_idx)
            r->prog.default_ns = r->known[j];
    }
    free(ev);
    return QV_OK;
}

static qv_status similar_starts(tune_run *r, const qv_tune_entry *like,
                                size_t *start, size_t cap, size_t *n_added,
                                qv_err *err)
{
    qv_tune_entry *sim = NULL;
    size_t n = 0, k = 0;
    *n_added = 0;
    if (!r->cache)
        return QV_OK;
    qv_status st = qv_tune_cache_similar(r->cache, like, &sim, &n, err);
    if (st)
        return st;
    for (size_t i = 0; i < n && k < cap; i++) {
        qv_config c;
        if (qv_config_parse(r->k, sim[i].config, &c, NULL))
            continue;
        long j = qv_space_find(r->space, &c);
        if (j >= 0 && j != r->def_idx)
            start[k++] = (size_t)j;
    }
    free(sim);
    *n_added = k;
    return QV_OK;
}

static void fill_entry(tune_run *r, const qv_search_result *sr,
                       qv_tune_entry *e)
{
    const qv_device_info *d = &r->dev->info;
    e->key = r->key;
    qv_config_format(r->k, &r->space->cfg[sr->best], e->config, sizeof e->config);
    e->median_ns = sr->best_cost;
    /* prog.default_ns holds the default's cost whether it was measured now
     * or loaded from an earlier run; INFINITY if it failed or is illegal
     * here, stored as 0 */
    e->default_ns = isfinite(r->prog.default_ns) ? r->prog.default_ns : 0;
    double flops = r->k->flops ? r->k->flops(r->inst->args) : 0;
    e->gflops = flops / sr->best_cost;
    e->evals = (int)sr->evals;
    e->failures = (int)sr->failures;
    snprintf(e->strategy, sizeof e->strategy, "%s",
             r->o->strategy ? r->o->strategy : QV_DEFAULT_STRATEGY);
    e->created_at = (int64_t)time(NULL);
    snprintf(e->version, sizeof e->version, "%s", QV_VERSION);
    snprintf(e->backend, sizeof e->backend, "%s", d->backend);
    snprintf(e->vendor, sizeof e->vendor, "%s", d->vendor);
    snprintf(e->device_name, sizeof e->device_name, "%s", d->name);
}

qv_status qv_tune_kernel(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                         const qv_kernel_decl *k, qv_shape s,
                         const qv_tune_opts *o, qv_tune_entry *out,
                         int *from_cache, int *interrupted, qv_err *err)
{
    memset(out, 0, sizeof *out);
    *from_cache = *interrupted = 0;
    tune_run r;
    memset(&r, 0, sizeof r);
    r.cache = cache;
    r.dev = dev;
    r.ref = ref;
    r.k = k;
    r.o = o;
    qv_shape at;
    snprintf(r.key.fingerprint, sizeof r.key.fingerprint, "%s", dev->info.fingerprint);
    snprintf(r.key.kernel, sizeof r.key.kernel, "%s", k->name);
    qv_tune_bucket(k, s, r.key.bucket, sizeof r.key.bucket, &at);
    qv_status st = qv_kernel_source_hash(dev, k, r.key.src_hash, err);
    if (st)
        return st;
    if (cache && o->force && (st = qv_tune_cache_forget(cache, &r.key, err)))
        return st;
    if (cache && !o->force) {
        st = qv_tune_cache_get(cache, &r.key, out, err);
        if (st == QV_OK) {
            *from_cache = 1;
            return QV_OK;
        }
        if (st != QV_ERR_NOT_FOUND)
            return st; /* a damaged or locked cache is reported, not re-tuned */
        st = QV_OK;
        qv_err_clear(err);
    }
    qv_space *space = NULL;
    if ((st = qv_space_new(k, &dev->info.limits, &space, err)))
        return st;
    r.space = space;
    r.small = (qv_shape){5, 37, 70, at.R < 9 ? at.R : 9};
    r.prog.device = dev->info.id;
    r.prog.kernel = k->name;
    r.prog.bucket = r.key.bucket;
    r.prog.best_ns = r.prog.default_ns = INFINITY;
    qv_config def;
    qv_kernel_default_config(k, &def);
    r.def_idx = qv_space_find(space, &def);
    r.known = malloc(space->n * sizeof *r.known);
    size_t start[8];
    size_t n_start = 0;
    if (!r.known)
        st = qv_fail(err, QV_ERR_NOMEM, "autotune: out of host memory");
    if (!st)
        st = qv_instance_new(dev, k, at, 99, &r.inst, err);
    if (!st) {
        for (size_t i = 0; i < space->n; i++)
            r.known[i] = NAN;
        st = load_known(&r, err);
    }
    if (!st) {
        if (r.def_idx >= 0)
            start[n_start++] = (size_t)r.def_idx;
        qv_tune_entry like;
        memset(&like, 0, sizeof like);
        like.key = r.key;
        snprintf(like.backend, sizeof like.backend, "%s", dev->info.backend);
        snprintf(like.vendor, sizeof like.vendor, "%s", dev->info.vendor);
        size_t added = 0;
        st = similar_starts(&r, &like, start + n_start, 8 - n_start, &added, err);
        n_start += added;
    }
    if (!st) {
        qv_search_opts so = {
            .strategy = o->strategy, .budget_evals = o->budget_evals,
            .budget_s = o->budget_s, .seed = o->seed, .start = start,
            .n_start = n_start, .known = r.known, .progress = on_progress,
            .progress_user = &r,
        };
        qv_search_result sr;
        st = qv_search_run(space, &so, cost, &r, &sr, err);
        if (!st && r.cache_st)
            st = qv_fail(err, r.cache_st, "%s", r.cache_err.msg);
        if (!st) {
            out->key = r.key;
            out->evals = (int)sr.evals;
            out->failures = (int)sr.failures;
            if (sr.interrupted)
                *interrupted = 1; /* by the stop flag or the progress callback */
            else if (sr.best < 0)
                st = qv_fail(err, QV_ERR_DEVICE,
                             "%s: every one of %zu candidates of %s failed "
                             "(`qvac check --device %s` shows why)",
                             dev->info.id, sr.evals, k->name, dev->info.id);
            else {
                fill_entry(&r, &sr, out);
                int stored = 0;
                if (cache)
                    st = qv_tune_cache_put(cache, out, 1, &stored, err);
            }
        }
    }
    qv_instance_destroy(&r.inst);
    free(r.known);
    qv_space_destroy(&space);
    return st;
}

/* ---- run-time lookup ---------------------------------------------------- */

static int parse_bucket(const char *b, double v[4])
{
    int M, N, K, R;
    if (sscanf(b, "M%d:N%d:K%d:R%d", &M, &N, &K, &R) != 4)
        return -1;
    v[0] = log2(M > 0 ? M : 1);
    v[1] = log2(N > 0 ? N : 1);
    v[2] = log2(K > 0 ? K : 1);
    v[3] = log2(R > 0 ? R : 1);
    return 0;
}

qv_status qv_tune_lookup(qv_tune_cache *cache, const qv_device *dev,
                         const qv_kernel_decl *k, qv_shape s, qv_config *out,
                         int *tuned, qv_err *err)
{
    qv_kernel_default_config(k, out);
    *tuned = 0;
    if (!cache)
        return QV_OK;
    char src[17], want[64];
    qv_status st = qv_kernel_source_hash(dev, k, src, err);
    if (st)
        return st;
    qv_tune_bucket(k, s, want, sizeof want, NULL);
    qv_tune_entry *e = NULL;
    size_t n = 0;
    if ((st = qv_tune_cache_buckets(cache, dev->info.fingerprint, k->name, src,
                                    &e, &n, err)))
        return st;
    double w[4], best = INFINITY;
    long pick = -1;
    if (parse_bucket(want, w) == 0)
        for (size_t i = 0; i < n; i++) {
            double v[4];
            if (parse_bucket(e[i].key.bucket, v))
                continue;
            double d = 0;
            for (int j = 0; j < 4; j++)
                d += fabs(v[j] - w[j]);
            if (d < best) {
                best = d;
                pick = (long)i;
            }
        }
    if (pick >= 0) {
        qv_config c;
        if (qv_config_parse(k, e[pick].config, &c, NULL) == QV_OK &&
            qv_kernel_check_config(k, &c, &dev->info.limits, NULL) == QV_OK) {
            *out = c;
            *tuned = 1;
        }
    }
    free(e);
    return QV_OK;
}

/* ---- shared tunings ---------------------------------------------------------- */

static int refuse(char *why, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int refuse(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && n)
        vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 0;
}

qv_status qv_tune_adopt(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                        const qv_tune_entry *e, int *stored, char *why, size_t why_n,
                        qv_err *err)
{
    int dummy;
    if (!stored)
        stored = &dummy;
    *stored = 0;
    if (why && why_n)
        why[0] = 0;
    if (!cache || !dev || !ref || !e)
        return qv_fail(err, QV_ERR_INVALID, "tune adopt: no cache, device or entry");
    if (strcmp(e->key.fingerprint, dev->info.fingerprint)) {
        refuse(why, why_n, "for device %.16s, not this one (%s)", e->key.fingerprint,
               dev->info.fingerprint);
        return QV_OK;
    }
    const qv_kernel_decl *k = qv_kernel_find(e->key.kernel);
    if (!k) {
        refuse(why, why_n, "no kernel '%.31s'", e->key.kernel);
        return QV_OK;
    }
    char src[17];
    qv_status s = qv_kernel_source_hash(dev, k, src, err);
    if (s)
        return s;
    if (strcmp(src, e->key.src_hash)) {
        refuse(why, why_n, "%s: another kernel source (%.16s; here %s)", k->name,
               e->key.src_hash, src);
        return QV_OK;
    }
    qv_config c;
    qv_err pe = {0};
    if (qv_config_parse(k, e->config, &c, &pe) ||
        qv_kernel_check_config(k, &c, &dev->info.limits, &pe)) {
        refuse(why, why_n, "%s: configuration '%.100s' refused: %.200s", k->name,
               e->config, pe.msg);
        return QV_OK;
    }
    int M, N, K, R;
    char again[64];
    qv_shape at;
    if (sscanf(e->key.bucket, "M%d:N%d:K%d:R%d", &M, &N, &K, &R) != 4 || M < 0 || N < 0 ||
        K < 0 || R < 0) {
        refuse(why, why_n, "%s: bucket '%.63s' is not M:N:K:R", k->name, e->key.bucket);
        return QV_OK;
    }
    qv_tune_bucket(k, (qv_shape){M, N, K, R}, again, sizeof again, &at);
    if (strcmp(again, e->key.bucket)) {
        refuse(why, why_n, "%s: '%.63s' is not a bucket of its own shape", k->name,
               e->key.bucket);
        return QV_OK;
    }
    /* verified at most at `qvac check`'s largest shape (every kernel takes
     * any shape, and the reference device's plain C is slow at the
     * bucket's), timed at the bucket's shape */
    qv_shape vs = at;
    vs.M = vs.M > 64 ? 64 : vs.M;
    vs.N = vs.N > 128 ? 128 : vs.N;
    vs.K = vs.K > 256 ? 256 : vs.K;
    vs.R = vs.R > 16 ? 16 : vs.R;
    qv_verify_result vr;
    qv_err ve = {0};
    s = qv_verify(dev, ref, k, &c, vs, 7, &vr, &ve);
    if (s || !vr.pass) {
        if (s)
            refuse(why, why_n, "%s %s: fails on this device: %.200s", k->name, e->config,
                   ve.msg);
        else
            refuse(why, why_n, "%s %s: wrong results (%s off by %.3g, tolerance %.3g)",
                   k->name, e->config, vr.worst, vr.max_err, vr.tol);
        return QV_OK;
    }
    qv_instance *inst = NULL;
    double med = 0;
    const qv_timing_opts quick = {.warmup = 1, .min_reps = 3, .max_reps = 5,
                                  .min_total_ns = 0, .timeout_ns = 30e9};
    s = qv_instance_new(dev, k, at, 11, &inst, err);
    if (!s)
        s = qv_time_config(inst, &c, &quick, &med, err);
    qv_instance_destroy(&inst);
    if (s)
        return s;
    qv_tune_entry local = *e;
    local.median_ns = med;
    local.default_ns = 0;
    local.gflops = med > 0 ? qv_kernel_flops(k, at) / med : 0;
    local.evals = 1;
    local.failures = 0;
    snprintf(local.strategy, sizeof local.strategy, "fleet");
    snprintf(local.version, sizeof local.version, "%s", QV_VERSION);
    local.created_at = (int64_t)time(NULL);
    snprintf(local.backend, sizeof local.backend, "%s", dev->info.backend);
    snprintf(local.vendor, sizeof local.vendor, "%s", dev->info.vendor);
    snprintf(local.device_name, sizeof local.device_name, "%s", dev->info.name);
    return qv_tune_cache_put(cache, &local, 0, stored, err);
}
