/* worker/job.c — see job.h. */
#include "worker/job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "formats/chat.h"
#include "formats/dataset.h"
#include "formats/gguf.h"
#include "formats/vocab.h"
#include "autotune/cache.h"
#include "train/mfu.h"

typedef enum { K_INT, K_NUM, K_STR } kind;

/* One option: its JSON key, kind, range, and where it lands. */
typedef struct opt_def {
    const char *key;
    kind k;
    double lo, hi;
} opt_def;

static const opt_def defs[] = {
    {"accum", K_INT, 1, 4096},          {"alpha", K_NUM, 1e-6, 1e6},
    {"batch", K_INT, 1, 4096},          {"chat_template", K_STR, 0, 0},
    {"ckpt_every", K_INT, 0, 1e8},      {"long", K_STR, 0, 0},
    {"clip", K_NUM, 0, 1e6},            {"eval_batches", K_INT, 1, 1e5},
    {"lr", K_NUM, 1e-9, 10},            {"rank", K_INT, 1, 128},
    {"seed", K_INT, 0, 9007199254740991.0}, {"seq_len", K_INT, 2, 65536},
    {"steps", K_INT, 1, 1e8},           {"targets", K_STR, 0, 0},
    {"val_fraction", K_NUM, 0, 0.9},    {"warmup", K_INT, 0, 1e8},
    {"weight_decay", K_NUM, 0, 10},     {"weights", K_STR, 0, 0},
};
#define N_DEFS (sizeof defs / sizeof defs[0])

static void set_num(qv_job_opts *o, const char *key, double v)
{
    qv_train_opts *t = &o->train;
    if (!strcmp(key, "accum")) t->accum = (int32_t)v;
    else if (!strcmp(key, "alpha")) t->alpha = (float)v;
    else if (!strcmp(key, "batch")) t->batch = (int32_t)v;
    else if (!strcmp(key, "ckpt_every")) t->ckpt_every = (int64_t)v;
    else if (!strcmp(key, "clip")) t->clip = (float)v;
    else if (!strcmp(key, "eval_batches")) t->eval_batches = (int32_t)v;
    else if (!strcmp(key, "lr")) t->lr = (float)v;
    else if (!strcmp(key, "rank")) t->rank = (int32_t)v;
    else if (!strcmp(key, "seed")) t->seed = (uint64_t)v;
    else if (!strcmp(key, "seq_len")) t->seq = (int32_t)v;
    else if (!strcmp(key, "steps")) t->steps = (int64_t)v;
    else if (!strcmp(key, "val_fraction")) o->val_fraction = v;
    else if (!strcmp(key, "warmup")) t->warmup = (int64_t)v;
    else if (!strcmp(key, "weight_decay")) t->weight_decay = (float)v;
}

qv_status qv_job_opts_parse(const char *json, qv_job_opts *o, qv_err *err)
{
    memset(o, 0, sizeof *o);
    qv_train_opts_default(&o->train);
    o->val_fraction = 0.1;
    if (!json || !*json)
        return QV_OK;
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return qv_fail(err, QV_ERR_INVALID, "job options: not JSON (%s, "
                       "column %d)", je.text, je.column);
    qv_status s = QV_OK;
    if (!json_is_object(root)) {
        s = qv_fail(err, QV_ERR_INVALID, "job options: not a JSON object");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const opt_def *d = NULL;
        for (size_t i = 0; i < N_DEFS; i++)
            if (!strcmp(defs[i].key, key))
                d = &defs[i];
        if (!d) {
            s = qv_fail(err, QV_ERR_INVALID, "job options: unknown key '%.64s'",
                        key);
            goto done;
        }
        if (d->k == K_STR) {
            if (!json_is_string(v)) {
                s = qv_fail(err, QV_ERR_INVALID, "job options: '%s' must be a "
                            "string", key);
                goto done;
            }
            const char *str = json_string_value(v);
            if (!strcmp(key, "chat_template")) {
                qv_chat_template t;
                qv_err ce = {0};
                if (*str && qv_chat_by_name(str, &t, &ce))
                    s = qv_fail(err, QV_ERR_INVALID, "job options: chat_template: %s",
                                ce.msg);
                else
                    snprintf(o->chat_template, sizeof o->chat_template, "%s", str);
            } else if (!strcmp(key, "long")) {
                if (!strcmp(str, "skip"))
                    o->long_policy = QV_LONG_SKIP;
                else if (!strcmp(str, "truncate"))
                    o->long_policy = QV_LONG_TRUNCATE;
                else
                    s = qv_fail(err, QV_ERR_INVALID, "job options: long is 'skip' "
                                "or 'truncate', not '%.32s'", str);
            } else if (!strcmp(key, "weights")) {
                if (!strcmp(str, "ternary"))
                    o->train.weights = QV_WEIGHTS_TERNARY;
                else if (!strcmp(str, "f16"))
                    o->train.weights = QV_WEIGHTS_F16;
                else
                    s = qv_fail(err, QV_ERR_INVALID, "job options: weights is "
                                "'ternary' or 'f16', not '%.32s'", str);
            } else if ((s = qv_lin_parse_targets(str, &o->train.targets, err))) {
                qv_err_prefix(err, s, "job options");
            }
            if (s)
                goto done;
            continue;
        }
        double x;
        if (d->k == K_INT) {
            if (!json_is_integer(v)) {
                s = qv_fail(err, QV_ERR_INVALID, "job options: '%s' must be an "
                            "integer", key);
                goto done;
            }
            x = (double)json_integer_value(v);
        } else {
            if (!json_is_number(v)) {
                s = qv_fail(err, QV_ERR_INVALID, "job options: '%s' must be a "
                            "number", key);
                goto done;
            }
            x = json_number_value(v);
        }
        if (!(x >= d->lo && x <= d->hi)) {
            s = qv_fail(err, QV_ERR_INVALID, "job options: '%s' = %g is out of "
                        "range (%g..%g)", key, x, d->lo, d->hi);
            goto done;
        }
        set_num(o, key, x);
    }
done:
    json_decref(root);
    return s;
}

qv_status qv_job_opts_format(const qv_job_opts *o, char **out, qv_err *err)
{
    const qv_train_opts *t = &o->train;
    char targets[64];
    qv_lin_format_targets(t->targets, targets, sizeof targets);
    json_t *j = json_pack(
        "{s:I, s:f, s:I, s:s, s:I, s:s, s:f, s:I, s:f, s:I, s:I, s:I, s:I, s:s, "
        "s:f, s:I, s:f, s:s}",
        "accum", (json_int_t)t->accum, "alpha", (double)t->alpha, "batch",
        (json_int_t)t->batch, "chat_template", o->chat_template, "ckpt_every",
        (json_int_t)t->ckpt_every, "long",
        o->long_policy == QV_LONG_TRUNCATE ? "truncate" : "skip", "clip",
        (double)t->clip, "eval_batches", (json_int_t)t->eval_batches, "lr",
        (double)t->lr, "rank", (json_int_t)t->rank, "seed",
        (json_int_t)(t->seed & 0x1fffffffffffffull), "seq_len",
        (json_int_t)t->seq, "steps", (json_int_t)t->steps, "targets", targets,
        "val_fraction", o->val_fraction, "warmup", (json_int_t)t->warmup,
        "weight_decay", (double)t->weight_decay, "weights",
        qv_weights_name(t->weights));
    *out = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(9))
             : NULL;
    json_decref(j);
    if (!*out)
        return qv_fail(err, QV_ERR_NOMEM, "job options: out of memory");
    return QV_OK;
}

qv_status qv_job_run(qv_device *dev, const qv_job_spec *spec,
                     const qv_job_opts *o, qv_train_result *res, qv_err *err)
{
    memset(res, 0, sizeof *res);
    if (!spec->model_path || !spec->data_path || !spec->out_dir)
        return qv_fail(err, QV_ERR_INVALID,
                       "job: a model, a dataset and an output folder are needed");
    qv_model *m = NULL;
    qv_dataset *all = NULL, *tr = NULL, *va = NULL;
    qv_status s = qv_model_load(spec->model_path, &m, err);
    if (!s) { /* the model's own tokenizer and chat template */
        qv_gguf *g = NULL;
        qv_vocab *v = NULL;
        qv_dataset_opts dopt;
        if (!(s = qv_gguf_open(spec->model_path, &g, err)))
            s = qv_dataset_opts_for_model(g, spec->model_path,
                                          o->chat_template[0] ? o->chat_template : NULL,
                                          (size_t)m->cfg.ctx, o->long_policy, &dopt,
                                          &v, err);
        if (!s)
            s = qv_dataset_load_file_ex(spec->data_path, &dopt, &all, err);
        qv_vocab_free(v);
        qv_gguf_free(g);
    }
    if (!s)
        s = qv_dataset_split(all, o->val_fraction, o->train.seed, &tr, &va, err);
    qv_tune_cache *cache = NULL;
    if (!s && spec->tune_db) {
        /* its own connection: jobs on other devices run in other threads */
        int tune = spec->tune_evals > 0 && spec->ref && dev != spec->ref;
        qv_err te = {0};
        if (qv_tune_cache_open(spec->tune_db, !tune, 2000, &cache, &te))
            cache = NULL; /* untuned, not failed: the job still runs */
        if (cache && tune) {
            const qv_train_opts *t = &o->train;
            qv_train_shape_opts so = {
                .weights = t->weights, .batch = t->batch, .seq = t->seq,
                .rank = t->full ? 0 : t->rank, .targets = t->full ? 0 : t->targets,
                .full = t->full, .head_f16 = qv_model_head_f16(m),
                .max_alloc = dev->info.max_alloc_bytes};
            qv_train_tune_opts to = {.budget_evals = spec->tune_evals,
                                     .stop = t->stop};
            qv_train_tune_result tr_res;
            if (qv_train_tune(cache, dev, spec->ref, m, &so, &to, &tr_res, &te))
                memset(&tr_res, 0, sizeof tr_res); /* defaults where it failed */
        }
    }
    if (!s) {
        qv_train_opts t = o->train;
        t.out_dir = spec->out_dir;
        t.resume_dir = spec->resume_dir;
        t.cache = cache;
        s = qv_train_run(dev, m, tr, va && qv_dataset_n_examples(va) ? va : NULL,
                         &t, res, err);
    }
    qv_tune_cache_destroy(&cache);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    qv_dataset_free(all);
    qv_model_free(&m);
    return s;
}
