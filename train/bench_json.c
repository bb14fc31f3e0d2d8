/* train/bench_json.c — a bench result as JSON and back (train/bench.h),
 * apart from the runs so the scheduler's reading of a peer's result has a
 * fuzz target that links without the training engine
 * (tests/fuzz/fuzz_bench.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/bench.h"

#define BITNET_CFG(D, L, H, F)                                                 \
    {.vocab = 32002, .dim = (D), .n_layers = (L), .n_heads = (H),             \
     .n_kv_heads = (H), .ffn_dim = (F), .ctx = 2048, .rope_theta = 10000.0f,  \
     .norm_eps = 1e-5f, .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1}

/* The models and their default runs: short enough for a worker to run at
 * enrollment (seconds at builtin, minutes at the public shapes on a CPU). */
const qv_bench_model qv_bench_models[QV_BENCH_N_MODELS] = {
    {"builtin", {0}, 4, 128, 6, 0},
    {"700m", BITNET_CFG(1536, 24, 16, 4096), 1, 128, 4, 0},
    {"1.3b", BITNET_CFG(2048, 24, 32, 5460), 1, 64, 4, 1},
    {"3b", BITNET_CFG(3200, 26, 32, 8640), 1, 64, 3, 1},
};

int qv_bench_model_index(const char *name)
{
    for (int i = 0; i < QV_BENCH_N_MODELS; i++)
        if (!strcmp(qv_bench_models[i].name, name ? name : "builtin"))
            return i;
    return -1;
}

qv_status qv_bench_defaults(const char *model, int32_t *batch, int32_t *seq,
                            int32_t *steps, qv_err *err)
{
    int i = qv_bench_model_index(model);
    if (i < 0)
        return qv_fail(err, QV_ERR_INVALID, "bench: unknown model '%.64s' (use one "
                       "of " QV_BENCH_MODELS ")", model);
    *batch = qv_bench_models[i].batch;
    *seq = qv_bench_models[i].seq;
    *steps = qv_bench_models[i].steps;
    return QV_OK;
}

#define MAX_STEPS 64 /* as train/bench.c */

/* ---- JSON ------------------------------------------------------------------ */

static json_t *mode_json(const qv_bench_mode *m)
{
    json_t *tags = json_object();
    for (int g = 0; g < QV_MEM_NTAGS; g++)
        if (m->by_tag[g])
            json_object_set_new(tags, qv_mem_tag_name((qv_mem_tag)g),
                                json_integer((json_int_t)m->by_tag[g]));
    return json_pack("{s:f, s:f, s:f, s:I, s:o, s:i}", "tokens_per_s", m->tokens_per_s,
                     "mfu", m->mfu, "gemm_gflops", m->gemm_gflops, "peak_bytes",
                     (json_int_t)m->peak_bytes, "peak_bytes_by_category", tags,
                     "steps", (int)m->steps);
}

json_t *qv_bench_to_json(const qv_bench_result *r)
{
    const qv_bench_mode *t = &r->mode[0], *f = &r->mode[1];
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:o, s:o}", "device",
        r->device, "backend", r->backend, "vendor", r->vendor, "name", r->name,
        "driver", r->driver, "fingerprint", r->fingerprint, "model", r->model,
        "qvac_version", r->version, "batch", (int)r->batch, "seq", (int)r->seq,
        "steps", (int)r->steps, "ternary", mode_json(t), "f16", mode_json(f));
    if (!j)
        return NULL;
    json_object_set_new(j, "speedup", json_real(f->tokens_per_s > 0
                                                    ? t->tokens_per_s / f->tokens_per_s
                                                    : 0));
    json_object_set_new(j, "memory_reduction",
                        json_real(f->peak_bytes ? 1.0 - (double)t->peak_bytes /
                                                            (double)f->peak_bytes
                                                : 0));
    json_object_set_new(j, "default_gflops", json_real(r->default_gflops));
    json_object_set_new(j, "tuned_vs_default", json_real(r->tuned_vs_default));
    json_object_set_new(j, "tune_s", json_real(r->tune_s));
    json_object_set_new(j, "measured_ms", json_integer((json_int_t)r->measured_ms));
    return j;
}

static qv_status get_str(const json_t *j, const char *key, char *out, size_t n,
                         qv_err *err)
{
    const char *v = json_string_value(json_object_get(j, key));
    if (!v)
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' is missing or not a "
                       "string", key);
    size_t len = strlen(v);
    if (len >= n)
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' is longer than %zu "
                       "bytes", key, n - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' holds a control "
                           "character", key);
    memcpy(out, v, len + 1);
    return QV_OK;
}

static qv_status get_num(const json_t *j, const char *key, double lo, double hi,
                         int required, double *out, qv_err *err)
{
    const json_t *v = json_object_get(j, key);
    if (!v && !required) {
        *out = 0;
        return QV_OK;
    }
    if (!json_is_number(v))
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' is missing or not a "
                       "number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' = %g is out of range "
                       "(%g..%g)", key, d, lo, hi);
    *out = d;
    return QV_OK;
}

#define MAX_BYTES 1e15 /* a petabyte: no device holds more */

static qv_status mode_from(const json_t *j, const char *key, qv_bench_mode *m, qv_err *err)
{
    const json_t *o = json_object_get(j, key);
    if (!json_is_object(o))
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s' is missing or not an "
                       "object", key);
    double v;
    qv_status s = get_num(o, "tokens_per_s", 0, 1e12, 1, &m->tokens_per_s, err);
    if (!s)
        s = get_num(o, "mfu", 0, 100, 0, &m->mfu, err);
    if (!s)
        s = get_num(o, "gemm_gflops", 0, 1e9, 0, &m->gemm_gflops, err);
    if (!s && !(s = get_num(o, "peak_bytes", 0, MAX_BYTES, 1, &v, err)))
        m->peak_bytes = (uint64_t)v;
    if (!s && !(s = get_num(o, "steps", 0, MAX_STEPS, 0, &v, err)))
        m->steps = (int32_t)v;
    const json_t *tags = json_object_get(o, "peak_bytes_by_category");
    if (!s && tags && !json_is_object(tags))
        s = qv_fail(err, QV_ERR_CORRUPT, "bench result: '%s.peak_bytes_by_category' is "
                    "not an object", key);
    for (int g = 0; g < QV_MEM_NTAGS && !s && tags; g++) {
        const char *tn = qv_mem_tag_name((qv_mem_tag)g);
        if (json_object_get(tags, tn) && !(s = get_num(tags, tn, 0, MAX_BYTES, 1, &v, err)))
            m->by_tag[g] = (uint64_t)v;
    }
    return s;
}

qv_status qv_bench_from_json(const json_t *j, qv_bench_result *r, qv_err *err)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(j))
        return qv_fail(err, QV_ERR_CORRUPT, "bench result: not a JSON object");
    qv_status s = get_str(j, "device", r->device, sizeof r->device, err);
    if (!s)
        s = get_str(j, "backend", r->backend, sizeof r->backend, err);
    if (!s)
        s = get_str(j, "vendor", r->vendor, sizeof r->vendor, err);
    if (!s)
        s = get_str(j, "name", r->name, sizeof r->name, err);
    if (!s)
        s = get_str(j, "driver", r->driver, sizeof r->driver, err);
    if (!s)
        s = get_str(j, "fingerprint", r->fingerprint, sizeof r->fingerprint, err);
    if (!s)
        s = get_str(j, "model", r->model, sizeof r->model, err);
    if (!s)
        s = get_str(j, "qvac_version", r->version, sizeof r->version, err);
    if (!s && !r->device[0])
        s = qv_fail(err, QV_ERR_CORRUPT, "bench result: 'device' is empty");
    double v;
    if (!s && !(s = get_num(j, "batch", 1, 1 << 20, 1, &v, err)))
        r->batch = (int32_t)v;
    if (!s && !(s = get_num(j, "seq", 1, 1 << 20, 1, &v, err)))
        r->seq = (int32_t)v;
    if (!s && !(s = get_num(j, "steps", 1, MAX_STEPS, 1, &v, err)))
        r->steps = (int32_t)v;
    if (!s)
        s = mode_from(j, "ternary", &r->mode[0], err);
    if (!s)
        s = mode_from(j, "f16", &r->mode[1], err);
    if (!s)
        s = get_num(j, "default_gflops", 0, 1e9, 0, &r->default_gflops, err);
    if (!s)
        s = get_num(j, "tuned_vs_default", 0, 1e6, 0, &r->tuned_vs_default, err);
    if (!s)
        s = get_num(j, "tune_s", 0, 1e9, 0, &r->tune_s, err);
    if (!s && !(s = get_num(j, "measured_ms", 0, 1e15, 0, &v, err)))
        r->measured_ms = (int64_t)v;
    return s;
}
