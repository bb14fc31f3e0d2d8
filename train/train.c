/* train/train.c — see train.h. */
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "formats/gguf.h"

void qv_train_opts_default(qv_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->weights = QV_WEIGHTS_TERNARY;
    o->rank = 16;
    o->alpha = 32.0f;
    o->targets = QV_TARGETS_DEFAULT;
    o->lr = 2e-3f;
    o->steps = 60;
    o->warmup = 5;
    o->batch = 4;
    o->seq = 128;
    o->accum = 1;
    o->clip = 1.0f;
    o->weight_decay = 0.0f;
    o->seed = 42;
    o->eval_batches = 8;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Linear warm-up to lr, then cosine decay to lr/10 at the last step. */
static float lr_at(const qv_train_opts *o, int64_t step)
{
    if (o->warmup > 0 && step <= o->warmup)
        return o->lr * (float)step / (float)o->warmup;
    double span = (double)(o->steps - o->warmup);
    double t = span > 0 ? (double)(step - o->warmup) / span : 1.0;
    if (t > 1.0)
        t = 1.0;
    double min = 0.1 * o->lr;
    return (float)(min + 0.5 * (o->lr - min) * (1.0 + cos(3.141592653589793 * t)));
}

static int stopped(const volatile sig_atomic_t *stop) { return stop && *stop; }

/* qv_train_eval that ends early (*loss NaN) when *stop is set. */
static qv_status eval_until(qv_net *n, const qv_dataset *ds, int32_t batch,
                            int32_t seq, int32_t max_batches, double *loss,
                            const volatile sig_atomic_t *stop, qv_err *err);

qv_status qv_train_eval(qv_net *n, const qv_dataset *ds, int32_t batch,
                        int32_t seq, int32_t max_batches, double *loss,
                        qv_err *err)
{
    return eval_until(n, ds, batch, seq, max_batches, loss, NULL, err);
}

static qv_status eval_until(qv_net *n, const qv_dataset *ds, int32_t batch,
                            int32_t seq, int32_t max_batches, double *loss,
                            const volatile sig_atomic_t *stop, qv_err *err)
{
    size_t cnt = (size_t)batch * (size_t)seq;
    int32_t *tok = malloc(cnt * 4), *tgt = malloc(cnt * 4);
    if (!tok || !tgt) {
        free(tok);
        free(tgt);
        return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
    }
    qv_cursor cur = {0, 0};
    double sum = 0.0;
    int64_t count = 0;
    qv_status s = QV_OK;
    int cut = 0;
    for (int32_t b = 0; b < max_batches && !s; b++) {
        if (stopped(stop)) {
            cut = 1;
            break;
        }
        int rows = 0;
        s = qv_dataset_eval_batch(ds, &cur, batch, seq, tok, tgt, &rows, err);
        if (s || rows == 0)
            break;
        s = qv_net_run(n, tok, tgt, 0, 1.0f, &sum, &count, err);
    }
    free(tok);
    free(tgt);
    *loss = count && !cut ? sum / (double)count : NAN;
    return s;
}

/* ---- checkpoints ----------------------------------------------------------- */

/* What must match for --resume to continue a run. */
static void run_signature(const qv_train_opts *o, const qv_model *m,
                          const qv_dataset *ds, char *buf, size_t n)
{
    char t[64];
    qv_lin_format_targets(o->targets, t, sizeof t);
    const qv_model_config *c = &m->cfg;
    int w = snprintf(buf, n, "model=%dx%d/%d/%d/%d data=%zu/%zu ", c->n_layers,
                     c->dim, c->ffn_dim, c->n_heads, c->vocab,
                     qv_dataset_n_examples(ds), qv_dataset_n_tokens(ds));
    if (w < 0 || (size_t)w >= n)
        return;
    buf += w;
    n -= (size_t)w;
    snprintf(buf, n,
             "weights=%s rank=%d alpha=%g targets=%s lr=%g steps=%lld "
             "warmup=%lld batch=%d seq=%d accum=%d clip=%g wd=%g seed=%llu "
             "full=%d",
             qv_weights_name(o->weights), o->rank, (double)o->alpha, t,
             (double)o->lr, (long long)o->steps, (long long)o->warmup,
             o->batch, o->seq, o->accum, (double)o->clip,
             (double)o->weight_decay, (unsigned long long)o->seed, o->full);
}

static qv_status mkdir_p(const char *dir, qv_err *err)
{
    char tmp[4096];
    if (strlen(dir) >= sizeof tmp)
        return qv_fail(err, QV_ERR_INVALID, "%s: path too long", dir);
    strcpy(tmp, dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return qv_fail(err, QV_ERR_IO, "cannot create %s: %s", tmp,
                               strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return qv_fail(err, QV_ERR_IO, "cannot create %s: %s", tmp,
                       strerror(errno));
    /* a late error would lose the whole run: the folder must be one and be
     * writable before the first step */
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return qv_fail(err, QV_ERR_IO, "output %s is not a folder; give --out a folder "
                       "(created when missing)", dir);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.qvac-write-test.XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0)
        return qv_fail(err, QV_ERR_IO, "cannot write in the output folder %s: %s; "
                       "give --out a folder you can write", dir, strerror(errno));
    close(fd);
    unlink(probe);
    return QV_OK;
}

typedef struct ckpt_state {
    int64_t step;
    qv_cursor cur;
    double before[2]; /* train, val loss before training */
} ckpt_state;

static qv_status save_checkpoint(qv_net *n, const qv_train_opts *o,
                                 const char *sig, const ckpt_state *st,
                                 const double *losses, qv_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.gguf", o->out_dir);
    qv_gguf_writer *w = NULL;
    int np = qv_net_n_params(n);
    float **bufs = calloc((size_t)np * 3, sizeof *bufs);
    double *lf = malloc(((size_t)st->step + 1) * sizeof *lf);
    qv_status s = bufs && lf ? qv_gguf_writer_new(&w, err)
                             : qv_fail(err, QV_ERR_NOMEM, "checkpoint: out of host memory");
#define TRY(x) do { if (!s) s = (x); } while (0)
    TRY(qv_gguf_writer_set_str(w, "general.type", "qvac-checkpoint", err));
    TRY(qv_gguf_writer_set_str(w, "qvac.run", sig, err));
    TRY(qv_gguf_writer_set_u64(w, "qvac.step", (uint64_t)st->step, err));
    TRY(qv_gguf_writer_set_u64(w, "qvac.data.epoch", st->cur.epoch, err));
    TRY(qv_gguf_writer_set_u64(w, "qvac.data.index", st->cur.index, err));
    TRY(qv_gguf_writer_set_u64(w, "qvac.seed", o->seed, err));
    if (!s) {
        for (int64_t i = 0; i < st->step; i++)
            lf[i] = losses[i];
        TRY(qv_gguf_writer_set_arr(w, "qvac.losses", QV_GGUF_FLOAT64, lf,
                                   (size_t)st->step, err));
        TRY(qv_gguf_writer_set_arr(w, "qvac.loss_before", QV_GGUF_FLOAT64,
                                   st->before, 2, err));
    }
    static const char *suffix[3] = {"", ".m1", ".m2"};
    static const int which[3] = {QV_PARAM_VALUE, QV_PARAM_M1, QV_PARAM_M2};
    for (int i = 0; i < np && !s; i++) {
        qv_param_info pi;
        qv_net_param_info(n, i, &pi);
        size_t cnt = (size_t)pi.rows * (size_t)pi.cols;
        for (int k = 0; k < 3 && !s; k++) {
            float *b = bufs[i * 3 + k] = malloc(cnt * 4);
            if (!b) {
                s = qv_fail(err, QV_ERR_NOMEM, "checkpoint: out of host memory");
                break;
            }
            s = qv_net_param_read(n, i, which[k], b, err);
            char name[96];
            snprintf(name, sizeof name, "%s%s", pi.name, suffix[k]);
            int64_t ne[2] = {pi.cols, pi.rows};
            TRY(qv_gguf_writer_add_tensor(w, name, 2, ne, QV_GGML_F32, b,
                                          cnt * 4, err));
        }
    }
    TRY(qv_gguf_write_file(w, path, err));
#undef TRY
    qv_gguf_writer_free(w);
    if (bufs)
        for (int i = 0; i < np * 3; i++)
            free(bufs[i]);
    free(bufs);
    free(lf);
    return s;
}

static qv_status load_checkpoint(qv_net *n, const qv_train_opts *o,
                                 const char *sig, ckpt_state *st,
                                 double *losses, qv_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.gguf", o->resume_dir);
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, err);
    if (s)
        return s;
    const char *have = NULL;
    uint64_t step = 0, ep = 0, idx = 0;
    s = qv_gguf_get_str(g, "qvac.run", &have, NULL, err);
    if (!s && strcmp(have, sig))
        s = qv_fail(err, QV_ERR_INVALID,
                    "%s was written by a run with other settings:\n  it:   "
                    "%.300s\n  this: %.300s\nresume with the same model, data "
                    "and options",
                    path, have, sig);
    if (!s)
        s = qv_gguf_get_u64(g, "qvac.step", &step, err);
    if (!s)
        s = qv_gguf_get_u64(g, "qvac.data.epoch", &ep, err);
    if (!s)
        s = qv_gguf_get_u64(g, "qvac.data.index", &idx, err);
    if (!s && step > (uint64_t)o->steps)
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: step %llu is past the run's %lld",
                    path, (unsigned long long)step, (long long)o->steps);
    const void *lv = NULL, *bv = NULL;
    size_t nl = 0, nb = 0;
    if (!s)
        s = qv_gguf_get_arr(g, "qvac.losses", QV_GGUF_FLOAT64, &lv, &nl, err);
    if (!s)
        s = qv_gguf_get_arr(g, "qvac.loss_before", QV_GGUF_FLOAT64, &bv, &nb, err);
    if (!s && (nl != step || nb != 2))
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: loss history does not match "
                    "step %llu", path, (unsigned long long)step);
    static const char *suffix[3] = {"", ".m1", ".m2"};
    static const int which[3] = {QV_PARAM_VALUE, QV_PARAM_M1, QV_PARAM_M2};
    for (int i = 0; i < qv_net_n_params(n) && !s; i++) {
        qv_param_info pi;
        qv_net_param_info(n, i, &pi);
        for (int k = 0; k < 3 && !s; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", pi.name, suffix[k]);
            const qv_gguf_tensor *t;
            s = qv_gguf_get_tensor(g, name, &t, err);
            if (!s && (t->type != QV_GGML_F32 || t->ne[0] != pi.cols ||
                       (t->n_dims > 1 ? t->ne[1] : 1) != pi.rows))
                s = qv_fail(err, QV_ERR_CORRUPT,
                            "%s: tensor %s has the wrong type or shape", path,
                            name);
            if (!s) {
                /* the data may not be 4-byte aligned in memory: copy */
                float *b = malloc(t->nbytes);
                if (!b) {
                    s = qv_fail(err, QV_ERR_NOMEM, "checkpoint: out of memory");
                    break;
                }
                memcpy(b, t->data, t->nbytes);
                s = qv_net_param_write(n, i, which[k], b, err);
                free(b);
            }
        }
    }
    if (!s) {
        st->step = (int64_t)step;
        st->cur.epoch = ep;
        st->cur.index = idx;
        const double *l = lv, *b = bv;
        for (size_t i = 0; i < nl; i++)
            losses[i] = l[i];
        st->before[0] = b[0];
        st->before[1] = b[1];
    }
    qv_gguf_free(g);
    return s;
}

/* ---- adapters ---------------------------------------------------------------- */

qv_status qv_adapter_save(qv_net *n, float alpha, int32_t rank,
                          unsigned targets, const char *path, qv_err *err)
{
    qv_gguf_writer *w = NULL;
    int np = qv_net_n_params(n);
    float **bufs = calloc((size_t)np + 1, sizeof *bufs);
    char t[64];
    qv_lin_format_targets(targets, t, sizeof t);
    qv_status s = bufs ? qv_gguf_writer_new(&w, err)
                       : qv_fail(err, QV_ERR_NOMEM, "adapter: out of memory");
#define TRY(x) do { if (!s) s = (x); } while (0)
    /* the base's architecture: llama_adapter_lora_init refuses an adapter
     * whose general.architecture differs from the model's */
    TRY(qv_gguf_writer_set_str(
        w, "general.architecture",
        qv_arch_file_name((qv_arch)qv_net_model_config(n)->arch), err));
    TRY(qv_gguf_writer_set_str(w, "general.type", "adapter", err));
    TRY(qv_gguf_writer_set_str(w, "adapter.type", "lora", err));
    TRY(qv_gguf_writer_set_f32(w, "adapter.lora.alpha", alpha, err));
    TRY(qv_gguf_writer_set_u32(w, "qvac.lora.rank", (uint32_t)rank, err));
    TRY(qv_gguf_writer_set_str(w, "qvac.lora.targets", t, err));
    for (int i = 0; i < np && !s; i++) {
        qv_param_info pi;
        qv_net_param_info(n, i, &pi);
        size_t len = strlen(pi.name);
        if (len < 7 || (strcmp(pi.name + len - 7, ".lora_a") &&
                        strcmp(pi.name + len - 7, ".lora_b")))
            continue;
        size_t cnt = (size_t)pi.rows * (size_t)pi.cols;
        bufs[i] = malloc(cnt * 4);
        if (!bufs[i]) {
            s = qv_fail(err, QV_ERR_NOMEM, "adapter: out of memory");
            break;
        }
        s = qv_net_param_read(n, i, QV_PARAM_VALUE, bufs[i], err);
        int64_t ne[2] = {pi.cols, pi.rows};
        TRY(qv_gguf_writer_add_tensor(w, pi.name, 2, ne, QV_GGML_F32, bufs[i],
                                      cnt * 4, err));
    }
    TRY(qv_gguf_write_file(w, path, err));
#undef TRY
    qv_gguf_writer_free(w);
    if (bufs)
        for (int i = 0; i < np; i++)
            free(bufs[i]);
    free(bufs);
    return s;
}

qv_status qv_adapter_info(const char *path, int32_t *rank, float *alpha,
                          unsigned *targets, qv_err *err)
{
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, err);
    if (s)
        return s;
    const char *type = NULL, *t = NULL;
    uint32_t r = 0;
    s = qv_gguf_get_str(g, "adapter.type", &type, NULL, err);
    if (!s && strcmp(type, "lora"))
        s = qv_fail(err, QV_ERR_UNSUPPORTED, "%s: adapter type '%.32s' (qvac "
                    "reads lora)", path, type);
    if (!s)
        s = qv_gguf_get_f32(g, "adapter.lora.alpha", alpha, err);
    if (!s)
        s = qv_gguf_get_u32(g, "qvac.lora.rank", &r, err);
    if (!s && (r < 1 || r > 128))
        s = qv_fail(err, QV_ERR_CORRUPT, "%s: rank %u out of range", path, r);
    if (!s)
        s = qv_gguf_get_str(g, "qvac.lora.targets", &t, NULL, err);
    if (!s)
        s = qv_lin_parse_targets(t, targets, err);
    if (!s)
        *rank = (int32_t)r;
    if (s && err)
        qv_err_prefix(err, s, "%s: not a qvac adapter", path);
    qv_gguf_free(g);
    return s;
}

qv_status qv_adapter_load(qv_net *n, const char *path, qv_err *err)
{
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, err);
    if (s)
        return s;
    /* every tensor of the adapter must be one of this model's: an adapter
     * for another model (more layers, other targets) is refused, not half
     * applied */
    for (size_t k = 0; k < qv_gguf_tensor_count(g) && !s; k++) {
        const char *tn = qv_gguf_tensor_at(g, k)->name;
        int found = 0;
        for (int i = 0; i < qv_net_n_params(n) && !found; i++) {
            qv_param_info pi;
            qv_net_param_info(n, i, &pi);
            found = strcmp(pi.name, tn) == 0;
        }
        if (!found)
            s = qv_fail(err, QV_ERR_INVALID,
                        "%s: tensor %s has no place in this model (%d adapter tensors "
                        "here); the adapter was trained for another model or other "
                        "--targets", path, tn, qv_net_n_params(n));
    }
    int loaded = 0;
    for (int i = 0; i < qv_net_n_params(n) && !s; i++) {
        qv_param_info pi;
        qv_net_param_info(n, i, &pi);
        const qv_gguf_tensor *t;
        s = qv_gguf_get_tensor(g, pi.name, &t, err);
        if (!s && (t->type != QV_GGML_F32 || t->ne[0] != pi.cols ||
                   (t->n_dims > 1 ? t->ne[1] : 1) != pi.rows))
            s = qv_fail(err, QV_ERR_CORRUPT,
                        "%s: tensor %s does not fit the model (type or shape)",
                        path, pi.name);
        if (!s) {
            float *b = malloc(t->nbytes);
            if (!b) {
                s = qv_fail(err, QV_ERR_NOMEM, "adapter: out of memory");
                break;
            }
            memcpy(b, t->data, t->nbytes);
            for (size_t j = 0; j < t->nbytes / 4 && !s; j++)
                if (!isfinite(b[j]))
                    s = qv_fail(err, QV_ERR_CORRUPT, "%s: %s holds a NaN or "
                                "infinity", path, pi.name);
            if (!s)
                s = qv_net_param_write(n, i, QV_PARAM_VALUE, b, err);
            free(b);
            loaded++;
        }
    }
    qv_gguf_free(g);
    return s;
}

/* ---- metrics -------------------------------------------------------------------- */

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static qv_status write_metrics(const qv_train_opts *o, const char *sig,
                               const qv_train_result *r, const qv_device *dev,
                               qv_err *err)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/metrics.json", o->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *j = json_object(), *mem = json_object(), *losses = json_array();
    if (!j || !mem || !losses) {
        json_decref(j);
        json_decref(mem);
        json_decref(losses);
        return qv_fail(err, QV_ERR_NOMEM, "metrics: out of memory");
    }
    json_object_set_new(j, "device", json_string(dev->info.id));
    json_object_set_new(j, "device_name", json_string(dev->info.name));
    json_object_set_new(j, "weights", json_string(qv_weights_name(o->weights)));
    json_object_set_new(j, "run", json_string(sig));
    json_object_set_new(j, "steps", json_integer(r->steps_done));
    /* the step this run started from: > 0 when it resumed a checkpoint */
    json_object_set_new(j, "start_step", json_integer(r->start_step));
    json_object_set_new(j, "train_loss_before", real_or_null(r->train_loss_before));
    json_object_set_new(j, "train_loss_after", real_or_null(r->train_loss_after));
    if (!isnan(r->val_loss_before)) {
        json_object_set_new(j, "val_loss_before", real_or_null(r->val_loss_before));
        json_object_set_new(j, "val_loss_after", real_or_null(r->val_loss_after));
    }
    json_object_set_new(j, "tokens_per_s", json_real(r->tokens_per_s));
    json_object_set_new(j, "peak_bytes", json_integer((json_int_t)r->mem.peak));
    for (int t = 0; t < QV_MEM_NTAGS; t++)
        json_object_set_new(mem, qv_mem_tag_name((qv_mem_tag)t),
                            json_integer((json_int_t)r->mem.by_tag[t]));
    json_object_set_new(j, "peak_bytes_by_category", mem);
    for (int64_t i = 0; i < r->n_losses; i++)
        json_array_append_new(losses, json_real(r->losses[i]));
    json_object_set_new(j, "losses", losses);
    int rc = json_dump_file(j, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (rc || rename(tmp, path)) {
        remove(tmp);
        return qv_fail(err, QV_ERR_IO, "cannot write %s: %s", path,
                       strerror(errno));
    }
    return QV_OK;
}

/* ---- the loop ------------------------------------------------------------------ */

static int report(const qv_train_opts *o, qv_train_progress *p)
{
    return o->progress ? o->progress(o->progress_user, p) : 0;
}

qv_status qv_train_run(qv_device *dev, qv_model *m, const qv_dataset *train,
                       const qv_dataset *val, const qv_train_opts *o,
                       qv_train_result *res, qv_err *err)
{
    memset(res, 0, sizeof *res);
    res->val_loss_before = res->val_loss_after = NAN;
    if (o->steps < 1 || o->accum < 1 || o->batch < 1 || o->seq < 2 ||
        !(o->lr > 0.0f) || o->warmup < 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: steps, accum and batch must be >= 1, seq >= 2, "
                       "lr > 0 and warmup >= 0");
    if (o->seq > m->cfg.ctx)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: --seq-len %d exceeds the model's context of %d",
                       o->seq, m->cfg.ctx);
    if (!o->full && (o->rank < 1 || !o->targets))
        return qv_fail(err, QV_ERR_INVALID,
                       "train: LoRA needs a rank >= 1 and at least one target");
    qv_net_opts no = {
        .weights = o->weights, .batch = o->batch, .seq = o->seq,
        .rank = o->full ? 0 : o->rank, .alpha = o->alpha,
        .targets = o->full ? 0 : o->targets, .full = o->full, .seed = o->seed,
        .cache = o->cache, .checkpoint = o->checkpoint,
    };
    /* the step's tokens and targets live on the host: batch x seq x accum
     * of each; refused before anything is spent when they would take more
     * than a quarter of the machine's memory (a CPU device's buffers may
     * take half) */
    {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        double host = (double)o->batch * (double)o->seq * (double)o->accum * 8.0;
        double phys = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
        if (phys > 0 && host > phys / 4)
            return qv_fail(err, QV_ERR_NOMEM,
                           "train: a step's %d x %d x %d tokens and targets take %.1f GiB "
                           "of host memory, more than a quarter of this machine's %.1f GiB; "
                           "lower --batch, --seq-len or --accum", o->batch, o->seq,
                           o->accum, host / 1073741824.0, phys / 1073741824.0);
    }
    qv_device_reset_peak(dev);
    qv_net *n = NULL;
    qv_status s = qv_net_new(dev, m, &no, &n, err);
    if (s)
        return s;
    for (int i = 0; i < qv_net_n_params(n); i++) {
        qv_param_info pi;
        qv_net_param_info(n, i, &pi);
        res->adapter_params += (uint64_t)pi.rows * (uint64_t)pi.cols;
    }
    size_t cnt = (size_t)o->batch * (size_t)o->seq * (size_t)o->accum;
    int32_t *tok = malloc(cnt * 4), *tgt = malloc(cnt * 4);
    double *losses = calloc((size_t)o->steps + 1, sizeof *losses);
    ckpt_state st = {0};
    char sig[768];
    run_signature(o, m, train, sig, sizeof sig);
    st.before[0] = st.before[1] = NAN;
    qv_train_progress p = {.steps = o->steps};
    if (!tok || !tgt || !losses) {
        s = qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        goto done;
    }
    if (o->out_dir && (s = mkdir_p(o->out_dir, err)))
        goto done;
    if (o->resume_dir) {
        if ((s = load_checkpoint(n, o, sig, &st, losses, err)))
            goto done;
    } else {
        p.phase = "eval before";
        report(o, &p);
        if (o->full && (s = qv_net_requantize(n, err)))
            goto done;
        if ((s = eval_until(n, train, o->batch, o->seq, o->eval_batches,
                            &st.before[0], o->stop, err)))
            goto done;
        if (val && (s = eval_until(n, val, o->batch, o->seq, o->eval_batches,
                                   &st.before[1], o->stop, err)))
            goto done;
    }
    res->train_loss_before = st.before[0];
    res->val_loss_before = st.before[1];
    res->start_step = st.step;
    qv_adamw_hp hp = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.999f,
                      .eps = 1e-8f, .weight_decay = o->weight_decay};
    double t0 = now_s();
    size_t mb = (size_t)o->batch * (size_t)o->seq;
    p.phase = "train";
    while (st.step < o->steps) {
        if ((o->stop && *o->stop) ||
            (o->stop_after && st.step - res->start_step >= o->stop_after)) {
            res->interrupted = 1;
            break;
        }
        int64_t step = st.step + 1;
        /* the step's micro-batches, drawn first so the loss is averaged over
         * every target token of the step */
        for (int a = 0; a < o->accum && !s; a++)
            s = qv_dataset_next_batch(train, &st.cur, o->seed, o->batch, o->seq,
                                      tok + a * mb, tgt + a * mb, err);
        if (s)
            goto done;
        int64_t targets = qv_dataset_count_targets(tgt, o->batch * o->accum, o->seq);
        float gscale = targets > 0 ? 1.0f / (float)targets : 0.0f;
        if (o->full && (s = qv_net_requantize(n, err)))
            goto done;
        if ((s = qv_net_zero_grads(n, err)))
            goto done;
        double lsum = 0.0;
        int64_t lcnt = 0;
        /* a stop is honoured between micro-batches: the step is dropped
         * whole (its gradients never reach the weights) */
        for (int a = 0; a < o->accum && !s && !res->interrupted; a++) {
            if (a > 0 && stopped(o->stop))
                res->interrupted = 1;
            else
                s = qv_net_run(n, tok + a * mb, tgt + a * mb, 1, gscale, &lsum,
                               &lcnt, err);
        }
        if (res->interrupted)
            break;
        double norm = 0.0;
        if (!s)
            s = qv_net_grad_norm(n, &norm, err);
        if (s)
            goto done;
        if (!isfinite(norm) || !isfinite(lsum)) {
            s = qv_fail(err, QV_ERR_INVALID,
                        "train: the loss or the gradient became NaN/inf at "
                        "step %lld; lower --lr", (long long)step);
            goto done;
        }
        float clip = o->clip > 0.0f && norm > o->clip ? (float)(o->clip / norm) : 1.0f;
        hp.lr = lr_at(o, step);
        if ((s = qv_net_adamw(n, &hp, step, clip, err)))
            goto done;
        losses[st.step] = lcnt ? lsum / (double)lcnt : 0.0;
        st.step = step;
        res->tokens += (int64_t)cnt;
        double el = now_s() - t0;
        p.step = step;
        p.loss = losses[step - 1];
        p.lr = hp.lr;
        p.elapsed_s = el;
        p.tokens_per_s = el > 0 ? (double)res->tokens / el : 0.0;
        p.eta_s = step > res->start_step
                      ? el / (double)(step - res->start_step) * (double)(o->steps - step)
                      : 0.0;
        p.peak_bytes = qv_device_peak_bytes(dev);
        if (report(o, &p))
            res->interrupted = 1;
        if (o->out_dir && o->ckpt_every > 0 && step % o->ckpt_every == 0 &&
            step < o->steps && (s = save_checkpoint(n, o, sig, &st, losses, err)))
            goto done;
        if (res->interrupted)
            break;
    }
    if ((s = qv_device_sync(dev, err)))
        goto done;
    res->seconds = now_s() - t0;
    res->tokens_per_s = res->seconds > 0 ? (double)res->tokens / res->seconds : 0.0;
    res->steps_done = st.step;
    /* a cancelled run (stop >= 2) is abandoned: no checkpoint to write */
    if (o->out_dir && !(o->stop && *o->stop >= 2) &&
        (s = save_checkpoint(n, o, sig, &st, losses, err)))
        goto done;
    if (!res->interrupted) {
        p.phase = "eval after";
        report(o, &p);
        if (o->full && (s = qv_net_requantize(n, err)))
            goto done;
        if ((s = eval_until(n, train, o->batch, o->seq, o->eval_batches,
                            &res->train_loss_after, o->stop, err)))
            goto done;
        if (val && (s = eval_until(n, val, o->batch, o->seq, o->eval_batches,
                                   &res->val_loss_after, o->stop, err)))
            goto done;
        if (stopped(o->stop))
            res->interrupted = 1;
    }
    if (res->interrupted) {
        res->train_loss_after = res->val_loss_after = NAN;
    }
    qv_net_memory_get(n, &res->mem);
    int abandoned = o->stop && *o->stop >= 2;
    if (o->full && !abandoned)
        s = qv_net_export(n, m, err);
    if (!s && o->out_dir && !o->full && !abandoned) {
        char path[4200];
        snprintf(path, sizeof path, "%s/adapter.gguf", o->out_dir);
        s = qv_adapter_save(n, o->alpha, o->rank, o->targets, path, err);
    }
    res->losses = losses;
    res->n_losses = st.step;
    losses = NULL;
    if (!s && o->out_dir && !abandoned)
        s = write_metrics(o, sig, res, dev, err);
done:
    free(tok);
    free(tgt);
    free(losses);
    qv_net_free(&n);
    return s;
}
