/* train/mfu.c — see mfu.h. */
#include "train/mfu.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/half.h"
#include "kernels/verify.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- model FLOPs ---------------------------------------------------------- */

double qv_step_flops(const qv_model_config *c, unsigned targets, int32_t rank,
                     int64_t tokens, int32_t seq, int full)
{
    double T = (double)tokens, per_layer = 0;
    int lora = rank > 0 && !full;
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        double nk = (double)N * (double)K;
        per_layer += (full ? 6.0 : 4.0) * nk * T;
        if (lora && (targets >> i & 1u))
            per_layer += 6.0 * T * (double)rank * ((double)N + (double)K);
    }
    /* causal pairs (key <= query) over T / seq sequences of seq tokens */
    double pairs = seq > 0 ? T * ((double)seq + 1.0) / 2.0 : 0.0;
    double D = (double)c->dim, V = (double)c->vocab;
    per_layer += 12.0 * D * pairs;
    double head = (full ? 6.0 : 4.0) * V * D * T;
    return per_layer * (double)c->n_layers + head;
}

double qv_mfu(double flops, double seconds, double gflops)
{
    if (!(flops > 0) || !(seconds > 0) || !(gflops > 0))
        return 0.0;
    return flops / seconds / (gflops * 1e9);
}

/* ---- the base matmul's throughput ---------------------------------------- */

/* Median ns of kernel `name` at shape s on dev in its looked-up config. */
static qv_status time_kernel(qv_device *dev, qv_tune_cache *cache,
                             const char *name, qv_shape s, double *ns,
                             qv_err *err)
{
    const qv_kernel_decl *k = qv_kernel_find(name);
    if (!k)
        return qv_fail(err, QV_ERR_NOT_FOUND, "mfu: no kernel %s", name);
    qv_config c;
    int tuned = 0;
    qv_status st = qv_tune_lookup(cache, dev, k, s, &c, &tuned, err);
    if (st)
        return st;
    qv_instance *in = NULL;
    if ((st = qv_instance_new(dev, k, s, 7, &in, err)))
        return st;
    st = qv_time_config(in, &c, NULL, ns, err);
    qv_instance_destroy(&in);
    if (st) {
        char why[400];
        snprintf(why, sizeof why, "%.399s", err ? err->msg : "");
        return qv_fail(err, st, "mfu: timing %s at %d,%d,%d on %s: %s", name,
                       s.M, s.N, s.K, dev->info.id, why);
    }
    return QV_OK;
}

qv_status qv_gemm_peak(qv_device *dev, qv_tune_cache *cache,
                       const qv_model_config *c, qv_weights w, int32_t tokens,
                       double *gflops, qv_err *err)
{
    *gflops = 0;
    if (tokens < 1)
        return qv_fail(err, QV_ERR_INVALID,
                       "mfu: the peak needs at least one token (got %d)", tokens);
    int32_t NN[QV_LIN_COUNT], KK[QV_LIN_COUNT];
    int count[QV_LIN_COUNT], n = 0;
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        int j = 0;
        while (j < n && !(NN[j] == N && KK[j] == K))
            j++;
        if (j == n) {
            NN[n] = N;
            KK[n] = K;
            count[n++] = 0;
        }
        count[j]++;
    }
    double flops = 0, seconds = 0;
    for (int j = 0; j < n; j++) {
        qv_shape s = {tokens, NN[j], KK[j], 0};
        double ns = 0, qns = 0;
        qv_status st;
        if (w == QV_WEIGHTS_TERNARY) {
            if ((st = time_kernel(dev, cache, "quantize_act",
                                  (qv_shape){tokens, 0, KK[j], 0}, &qns, err)) ||
                (st = time_kernel(dev, cache, "ternary_matmul", s, &ns, err)))
                return st;
        } else if ((st = time_kernel(dev, cache, "f16_matmul", s, &ns, err))) {
            return st;
        }
        flops += count[j] * 2.0 * tokens * (double)NN[j] * (double)KK[j];
        seconds += count[j] * (ns + qns) * 1e-9;
    }
    *gflops = seconds > 0 ? flops / seconds / 1e9 : 0;
    return QV_OK;
}

/* ---- the launches of a step ------------------------------------------------ */

int qv_model_head_f16(const qv_model *m)
{
    size_t VD = (size_t)m->cfg.vocab * (size_t)m->cfg.dim;
    const float *mats[2] = {m->tok_emb, m->cfg.tied ? NULL : m->head};
    for (int j = 0; j < 2; j++) {
        if (!mats[j])
            continue;
        for (size_t i = 0; i < VD; i++)
            if (qv_f16_to_f32(qv_f32_to_f16(mats[j][i])) != mats[j][i])
                return 0;
    }
    return 1;
}

typedef struct launch_list {
    qv_train_launch *out;
    size_t cap, n;
} launch_list;

static void add(launch_list *l, const char *kernel, int32_t M, int32_t N,
                int32_t K, int32_t R)
{
    qv_shape s = {M, N, K, R};
    size_t lim = l->n < l->cap ? l->n : l->cap;
    for (size_t i = 0; i < lim; i++)
        if (!strcmp(l->out[i].kernel, kernel) && !memcmp(&l->out[i].s, &s, sizeof s))
            return;
    if (l->n < l->cap)
        l->out[l->n] = (qv_train_launch){kernel, s};
    l->n++;
}

size_t qv_train_launches(const qv_model_config *c, const qv_train_shape_opts *o,
                         qv_train_launch *out, size_t cap)
{
    launch_list l = {out, out ? cap : 0, 0};
    /* counting without a list: collect into a small local one */
    qv_train_launch tmp[64];
    if (!out) {
        l.out = tmp;
        l.cap = sizeof tmp / sizeof tmp[0];
    }
    int32_t T = o->batch * o->seq, D = c->dim, V = c->vocab;
    int ternary = o->weights == QV_WEIGHTS_TERNARY || o->full;
    int lora = o->rank > 0 && !o->full;
    /* forward: each linear in order */
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        if (ternary) {
            add(&l, "quantize_act", T, 0, K, 0);
            add(&l, "ternary_matmul", T, N, K, 0);
        } else {
            add(&l, "f16_matmul", T, N, K, 0);
        }
        if (lora && (o->targets >> i & 1u))
            add(&l, "lora_fwd", T, N, K, o->rank);
    }
    /* the head, whole or in blocks of rows */
    int head16 = o->head_f16 && !o->full;
    uint64_t row_bytes = (uint64_t)D * (head16 ? 2u : 4u);
    int32_t rows = V, last = V;
    if (!o->full && o->max_alloc && (uint64_t)V * row_bytes > o->max_alloc) {
        uint64_t r = o->max_alloc / row_bytes;
        rows = r < 1 ? 1 : r < (uint64_t)V ? (int32_t)r : V;
        last = V - (V - 1) / rows * rows;
    }
    int32_t hr[2] = {rows, last};
    for (int b = 0; b < (rows == last ? 1 : 2); b++)
        add(&l, head16 ? "f16_matmul" : "f32_matmul", T, hr[b], D, 0);
    /* backward: the head, then the layers' linears from the last */
    for (int b = 0; b < (rows == last ? 1 : 2); b++) {
        if (head16)
            add(&l, "f16_matmul_t", T, hr[b], D, 0);
        else
            add(&l, "f32_matmul", T, D, hr[b], 0);
    }
    if (o->full)
        add(&l, "f32_matmul", V, D, T, 0);
    for (int i = QV_LIN_COUNT - 1; i >= 0; i--) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        add(&l, ternary ? "ternary_matmul_t" : "f16_matmul_t", T, N, K, 0);
        if (lora && (o->targets >> i & 1u))
            add(&l, "lora_bwd", T, N, K, o->rank);
        if (o->full)
            add(&l, "f32_matmul", N, K, T, 0);
    }
    return l.n;
}

/* ---- tuning at the model's shapes ----------------------------------------- */

qv_status qv_train_tune(qv_tune_cache *cache, qv_device *dev, qv_device *ref,
                        const qv_model *m, const qv_train_shape_opts *s,
                        const qv_train_tune_opts *o, qv_train_tune_result *res,
                        qv_err *err)
{
    memset(res, 0, sizeof *res);
    if (!cache || !dev || !ref || !m || !s || !o)
        return qv_fail(err, QV_ERR_INVALID,
                       "train tune: needs a cache, a device, the reference "
                       "device, a model and options");
    double t0 = now_s();
    qv_train_launch ls[64];
    size_t n = qv_train_launches(&m->cfg, s, ls, sizeof ls / sizeof ls[0]);
    if (n > sizeof ls / sizeof ls[0])
        n = sizeof ls / sizeof ls[0];
    /* one per tune bucket: launches of one bucket share an entry */
    char seen[64][96];
    size_t n_seen = 0;
    qv_tune_opts to = {
        .budget_evals = o->budget_evals, .budget_s = o->budget_s,
        .seed = 1, .timing = o->timing, .progress = o->progress,
        .progress_user = o->progress_user, .stop = o->stop,
    };
    if (!to.budget_evals && !(to.budget_s > 0))
        to.budget_evals = 8;
    qv_status st = QV_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const qv_kernel_decl *k = qv_kernel_find(ls[i].kernel);
        if (!k) {
            st = qv_fail(err, QV_ERR_NOT_FOUND, "train tune: no kernel %s",
                         ls[i].kernel);
            break;
        }
        char b[64], key[96];
        qv_tune_bucket(k, ls[i].s, b, sizeof b, NULL);
        snprintf(key, sizeof key, "%s/%s", k->name, b);
        size_t j = 0;
        while (j < n_seen && strcmp(seen[j], key))
            j++;
        if (j < n_seen)
            continue;
        snprintf(seen[n_seen++], sizeof seen[0], "%s", key);
        res->launches++;
        if (o->stop && *o->stop) {
            res->interrupted = 1;
            continue;
        }
        qv_tune_entry e;
        int from_cache = 0, interrupted = 0;
        qv_err e1 = {0};
        qv_status s1 = qv_tune_kernel(cache, dev, ref, k, ls[i].s, &to, &e,
                                      &from_cache, &interrupted, &e1);
        if (s1 == QV_ERR_IO || s1 == QV_ERR_CORRUPT || s1 == QV_ERR_NOMEM) {
            st = qv_fail(err, s1, "train tune: %s at %s on %s: %s", k->name, b,
                         dev->info.id, e1.msg);
        } else if (s1) {
            res->failed++;
            if (!res->note[0])
                snprintf(res->note, sizeof res->note, "%s at %s: %.400s", k->name,
                         b, e1.msg);
        } else if (interrupted) {
            res->interrupted = 1;
        } else if (from_cache) {
            res->cached++;
        } else {
            res->tuned++;
        }
    }
    res->seconds = now_s() - t0;
    return st;
}
