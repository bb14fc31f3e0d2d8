/* train/model_io.c — the model as GGUF v3 (see model.h and docs/formats.md).
 * Keys and tensor names follow llama.cpp's `bitnet` architecture. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "formats/gguf.h"
#include "formats/tq.h"
#include "kernels/ternary.h"
#include "train/model.h"

static const char *lin_tensor[QV_LIN_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down",
};

/* ---- writing --------------------------------------------------------------- */

/* Everything the writer borrows until the file is written. */
typedef struct keep {
    void **p;
    size_t n, cap;
} keep;

static void *keep_alloc(keep *k, size_t bytes)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 64;
        void **p = realloc(k->p, cap * sizeof *p);
        if (!p)
            return NULL;
        k->p = p;
        k->cap = cap;
    }
    void *b = malloc(bytes ? bytes : 1);
    if (b)
        k->p[k->n++] = b;
    return b;
}

static void keep_free(keep *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->p[i]);
    free(k->p);
}

static qv_status add_f32(qv_gguf_writer *w, const char *name, const float *v,
                         int64_t ne0, int64_t ne1, qv_err *err)
{
    int64_t ne[2] = {ne0, ne1};
    return qv_gguf_writer_add_tensor(w, name, ne1 > 1 ? 2 : 1, ne,
                                     QV_GGML_F32, v,
                                     (size_t)ne0 * (size_t)ne1 * 4, err);
}

static qv_status add_linear(qv_gguf_writer *w, keep *k, const char *name,
                            const qv_linear *l, qv_err *err)
{
    int64_t ne[2] = {l->K, l->N};
    qv_status s;
    if (l->K % QV_TQ_QK_K == 0) {
        size_t pb = qv_ternary_bytes(l->N, l->K);
        size_t tb = qv_tq2_0_bytes(l->N, l->K);
        uint32_t *packed = keep_alloc(k, pb);
        uint8_t *tq = keep_alloc(k, tb);
        if (!packed || !tq)
            return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
        if ((s = qv_ternary_pack(l->q, l->N, l->K, packed, err)) ||
            (s = qv_ternary_to_tq2_0(packed, l->N, l->K, l->scale, tq, tb, err)))
            return s;
        return qv_gguf_writer_add_tensor(w, name, 2, ne, QV_GGML_TQ2_0, tq, tb,
                                         err);
    }
    /* rows too short for TQ2_0 blocks: int8 codes and a scale tensor */
    if ((s = qv_gguf_writer_add_tensor(w, name, 2, ne, QV_GGML_I8, l->q,
                                       (size_t)l->N * (size_t)l->K, err)))
        return s;
    char sname[64];
    snprintf(sname, sizeof sname, "%.50s.scale", name);
    int64_t one = 1;
    return qv_gguf_writer_add_tensor(w, sname, 1, &one, QV_GGML_F32, &l->scale,
                                     4, err);
}

qv_status qv_model_save(const qv_model *m, const char *path, qv_err *err)
{
    const qv_model_config *c = &m->cfg;
    qv_gguf_writer *w = NULL;
    keep k = {0};
    qv_status s = qv_gguf_writer_new(&w, err);
    if (s)
        return s;
#define TRY(x) do { if ((s = (x))) goto done; } while (0)
    TRY(qv_gguf_writer_set_str(w, "general.architecture", "bitnet", err));
    TRY(qv_gguf_writer_set_str(w, "general.name", "qvac", err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.context_length", (uint32_t)c->ctx, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.embedding_length", (uint32_t)c->dim, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.block_count", (uint32_t)c->n_layers, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.feed_forward_length", (uint32_t)c->ffn_dim, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.attention.head_count", (uint32_t)c->n_heads, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.attention.head_count_kv", (uint32_t)c->n_kv_heads, err));
    TRY(qv_gguf_writer_set_f32(w, "bitnet.rope.freq_base", c->rope_theta, err));
    TRY(qv_gguf_writer_set_f32(w, "bitnet.attention.layer_norm_rms_epsilon", c->norm_eps, err));
    TRY(qv_gguf_writer_set_u32(w, "bitnet.vocab_size", (uint32_t)c->vocab, err));
    TRY(qv_gguf_writer_set_str(w, "qvac.activation", c->act == QV_ACT_RELU2 ? "relu2" : "silu", err));
    TRY(qv_gguf_writer_set_str(w, "qvac.tokenizer", "bytes", err));
    TRY(add_f32(w, "token_embd.weight", m->tok_emb, c->dim, c->vocab, err));
    TRY(add_f32(w, "output_norm.weight", m->out_norm, c->dim, 1, err));
    if (!c->tied)
        TRY(add_f32(w, "output.weight", m->head, c->dim, c->vocab, err));
    for (int l = 0; l < c->n_layers; l++) {
        const qv_layer *L = &m->layers[l];
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        TRY(add_f32(w, name, L->attn_norm, c->dim, 1, err));
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        TRY(add_f32(w, name, L->ffn_norm, c->dim, 1, err));
        if (c->sub_norm) {
            snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
            TRY(add_f32(w, name, L->attn_sub_norm, c->dim, 1, err));
            snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
            TRY(add_f32(w, name, L->ffn_sub_norm, c->ffn_dim, 1, err));
        }
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_tensor[i]);
            TRY(add_linear(w, &k, name, &L->lin[i], err));
        }
    }
    s = qv_gguf_write_file(w, path, err);
#undef TRY
done:
    qv_gguf_writer_free(w);
    keep_free(&k);
    return s;
}

/* ---- reading --------------------------------------------------------------- */

static qv_status get_u32(const qv_gguf *g, const char *key, int32_t *out,
                         qv_err *err)
{
    uint32_t v;
    qv_status s = qv_gguf_get_u32(g, key, &v, err);
    if (s)
        return s;
    if (v > (uint32_t)INT32_MAX)
        return qv_fail(err, QV_ERR_CORRUPT, "model: %s = %u is too large",
                       key, v);
    *out = (int32_t)v;
    return QV_OK;
}

/* A float tensor of exactly n elements (F32 or F16) into a new array. */
static qv_status read_vec(const qv_gguf *g, const char *name, int64_t ne0,
                          int64_t ne1, float **out, qv_err *err)
{
    const qv_gguf_tensor *t;
    qv_status s = qv_gguf_get_tensor(g, name, &t, err);
    if (s)
        return s;
    int64_t n1 = t->n_dims > 1 ? t->ne[1] : 1;
    if (t->ne[0] != ne0 || n1 != ne1 || t->n_dims > 2 ||
        (t->type != QV_GGML_F32 && t->type != QV_GGML_F16))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "model: tensor %s is %s [%lld, %lld]; expected F32 or "
                       "F16 [%lld, %lld]", name,
                       qv_ggml_type_name(t->type) ? qv_ggml_type_name(t->type) : "?",
                       (long long)t->ne[0], (long long)n1, (long long)ne0,
                       (long long)ne1);
    size_t n = (size_t)ne0 * (size_t)ne1;
    float *v = malloc(n * 4);
    if (!v)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %s",
                       name);
    if (t->type == QV_GGML_F32) {
        memcpy(v, t->data, n * 4);
    } else {
        const uint8_t *b = t->data;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            v[i] = qv_f16_to_f32(h);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (v[i] != v[i] || v[i] > 3e38f || v[i] < -3e38f) {
            free(v);
            return qv_fail(err, QV_ERR_CORRUPT,
                           "model: tensor %s holds a NaN or infinity", name);
        }
    *out = v;
    return QV_OK;
}

static qv_status read_linear(const qv_gguf *g, const char *name, qv_linear *l,
                             qv_err *err)
{
    const qv_gguf_tensor *t;
    qv_status s = qv_gguf_get_tensor(g, name, &t, err);
    if (s)
        return s;
    if (t->n_dims != 2 || t->ne[0] != l->K || t->ne[1] != l->N)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "model: tensor %s has shape [%lld, %lld]; the header "
                       "says [%d, %d]", name, (long long)t->ne[0],
                       (long long)(t->n_dims > 1 ? t->ne[1] : 1), l->K, l->N);
    size_t n = (size_t)l->N * (size_t)l->K;
    l->q = malloc(n);
    if (!l->q)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %s",
                       name);
    if (t->type == QV_GGML_TQ2_0 || t->type == QV_GGML_TQ1_0) {
        size_t pb = qv_ternary_bytes(l->N, l->K);
        uint32_t *packed = malloc(pb);
        if (!packed)
            return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
        s = t->type == QV_GGML_TQ2_0
                ? qv_tq2_0_to_ternary(t->data, t->nbytes, l->N, l->K, packed,
                                      &l->scale, err)
                : qv_tq1_0_to_ternary(t->data, t->nbytes, l->N, l->K, packed,
                                      &l->scale, err);
        if (!s)
            s = qv_ternary_unpack(packed, l->N, l->K, l->q, err);
        free(packed);
        if (s)
            return qv_err_prefix(err, s, "model: tensor %s", name);
        return QV_OK;
    }
    if (t->type != QV_GGML_I8)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "model: tensor %s has type %s; qvac reads ternary "
                       "weights as TQ2_0, TQ1_0 or I8 codes", name,
                       qv_ggml_type_name(t->type) ? qv_ggml_type_name(t->type) : "?");
    const int8_t *c = t->data;
    for (size_t i = 0; i < n; i++) {
        if (c[i] < -1 || c[i] > 1)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "model: tensor %s holds %d at element %zu; ternary "
                           "codes are -1, 0, 1", name, c[i], i);
        l->q[i] = c[i];
    }
    char sname[64];
    snprintf(sname, sizeof sname, "%.50s.scale", name);
    float *sc = NULL;
    if ((s = read_vec(g, sname, 1, 1, &sc, err)))
        return s;
    l->scale = sc[0];
    free(sc);
    if (!(l->scale > 0.0f))
        return qv_fail(err, QV_ERR_CORRUPT, "model: %s must be > 0", sname);
    return QV_OK;
}

static qv_status load_gguf(const qv_gguf *g, const char *what, qv_model **out,
                           qv_err *err)
{
    const char *arch = NULL;
    qv_status s = qv_gguf_get_str(g, "general.architecture", &arch, NULL, err);
    if (s)
        return qv_err_prefix(err, s, "%s: not a model file", what);
    if (strcmp(arch, "bitnet"))
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: architecture '%.64s'; qvac fine-tunes 'bitnet' "
                       "models", what, arch);
    qv_model_config c;
    memset(&c, 0, sizeof c);
    if ((s = get_u32(g, "bitnet.context_length", &c.ctx, err)) ||
        (s = get_u32(g, "bitnet.embedding_length", &c.dim, err)) ||
        (s = get_u32(g, "bitnet.block_count", &c.n_layers, err)) ||
        (s = get_u32(g, "bitnet.feed_forward_length", &c.ffn_dim, err)) ||
        (s = get_u32(g, "bitnet.attention.head_count", &c.n_heads, err)) ||
        (s = qv_gguf_get_f32(g, "bitnet.attention.layer_norm_rms_epsilon",
                             &c.norm_eps, err)))
        return qv_err_prefix(err, s, "%s", what);
    c.n_kv_heads = c.n_heads;
    if (qv_gguf_find_kv(g, "bitnet.attention.head_count_kv") &&
        (s = get_u32(g, "bitnet.attention.head_count_kv", &c.n_kv_heads, err)))
        return s;
    c.rope_theta = 10000.0f;
    if (qv_gguf_find_kv(g, "bitnet.rope.freq_base") &&
        (s = qv_gguf_get_f32(g, "bitnet.rope.freq_base", &c.rope_theta, err)))
        return s;
    const qv_gguf_tensor *emb;
    if ((s = qv_gguf_get_tensor(g, "token_embd.weight", &emb, err)))
        return s;
    if (emb->n_dims != 2 || emb->ne[1] > INT32_MAX)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: token_embd.weight must be 2-D", what);
    c.vocab = (int32_t)emb->ne[1];
    const char *act = "relu2";
    if (qv_gguf_find_kv(g, "qvac.activation") &&
        (s = qv_gguf_get_str(g, "qvac.activation", &act, NULL, err)))
        return s;
    if (strcmp(act, "silu") && strcmp(act, "relu2"))
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: activation '%.32s' (qvac knows silu and relu2)",
                       what, act);
    c.act = strcmp(act, "silu") ? QV_ACT_RELU2 : QV_ACT_SILU;
    c.sub_norm = qv_gguf_find_tensor(g, "blk.0.attn_sub_norm.weight") != NULL;
    c.tied = qv_gguf_find_tensor(g, "output.weight") == NULL;
    if ((s = qv_model_config_check(&c, err)))
        return qv_err_prefix(err, QV_ERR_CORRUPT, "%s", what);
    uint64_t nt, no;
    qv_model_count(&c, &nt, &no);
    if (nt + no > ((uint64_t)1 << 36))
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: %llu parameters is more than qvac handles", what,
                       (unsigned long long)(nt + no));

    qv_model *m = calloc(1, sizeof *m);
    if (!m)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    m->cfg = c;
    m->layers = calloc((size_t)c.n_layers, sizeof *m->layers);
    if (!m->layers) {
        s = qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
        goto fail;
    }
    if ((s = read_vec(g, "token_embd.weight", c.dim, c.vocab, &m->tok_emb, err)) ||
        (s = read_vec(g, "output_norm.weight", c.dim, 1, &m->out_norm, err)) ||
        (!c.tied && (s = read_vec(g, "output.weight", c.dim, c.vocab, &m->head, err))))
        goto fail;
    for (int l = 0; l < c.n_layers; l++) {
        qv_layer *L = &m->layers[l];
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((s = read_vec(g, name, c.dim, 1, &L->attn_norm, err)))
            goto fail;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((s = read_vec(g, name, c.dim, 1, &L->ffn_norm, err)))
            goto fail;
        if (c.sub_norm) {
            snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
            if ((s = read_vec(g, name, c.dim, 1, &L->attn_sub_norm, err)))
                goto fail;
            snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
            if ((s = read_vec(g, name, c.ffn_dim, 1, &L->ffn_sub_norm, err)))
                goto fail;
        }
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            qv_linear *lin = &L->lin[i];
            qv_model_lin_shape(&c, (qv_lin_id)i, &lin->N, &lin->K);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_tensor[i]);
            if ((s = read_linear(g, name, lin, err)))
                goto fail;
        }
    }
    *out = m;
    return QV_OK;
fail:
    qv_model_free(&m);
    return s;
}

qv_status qv_model_load(const char *path, qv_model **out, qv_err *err)
{
    *out = NULL;
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, err);
    if (s)
        return s;
    s = load_gguf(g, path, out, err);
    qv_gguf_free(g);
    return s;
}

qv_status qv_model_load_mem(const void *bytes, size_t n, const char *name,
                            qv_model **out, qv_err *err)
{
    *out = NULL;
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_parse(bytes, n, &g, err);
    if (s)
        return qv_err_prefix(err, s, "%s", name);
    s = load_gguf(g, name, out, err);
    qv_gguf_free(g);
    return s;
}
