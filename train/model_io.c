/* train/model_io.c — the model as GGUF v3 (see model.h and docs/formats.md).
 * Keys and tensor names follow llama.cpp's `bitnet` architecture. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "formats/gguf.h"
#include "formats/i2s.h"
#include "formats/tokenizer.h"
#include "formats/vocab.h"
#include "formats/tq.h"
#include "kernels/ternary.h"
#include "train/model.h"

static const char *lin_tensor[QV_LIN_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down",
};

/* "<arch>.<suffix>" into buf. */
static const char *akey(char *buf, size_t n, const char *arch,
                        const char *suffix)
{
    snprintf(buf, n, "%s.%s", arch, suffix);
    return buf;
}

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
        size_t tb = qv_tq2_0_bytes(l->N, l->K);
        uint8_t *tq = keep_alloc(k, tb);
        if (!tq)
            return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
        if ((s = qv_ternary_to_tq2_0(l->packed, l->N, l->K, l->scale, tq, tb, err)))
            return s;
        return qv_gguf_writer_add_tensor(w, name, 2, ne, QV_GGML_TQ2_0, tq, tb,
                                         err);
    }
    /* rows too short for TQ2_0 blocks: int8 codes and a scale tensor */
    size_t nq = (size_t)l->N * (size_t)l->K;
    int8_t *q = keep_alloc(k, nq);
    if (!q)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    if ((s = qv_ternary_unpack(l->packed, l->N, l->K, q, err)) ||
        (s = qv_gguf_writer_add_tensor(w, name, 2, ne, QV_GGML_I8, q, nq, err)))
        return s;
    char sname[64];
    snprintf(sname, sizeof sname, "%.50s.scale", name);
    int64_t one = 1;
    float *sc = keep_alloc(k, 4); /* the writer borrows it until the end */
    if (!sc)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    *sc = l->scale;
    return qv_gguf_writer_add_tensor(w, sname, 1, &one, QV_GGML_F32, sc, 4,
                                     err);
}

qv_arch qv_model_config_arch(const qv_model_config *c)
{
    if (c->act == QV_ACT_SILU && c->sub_norm && c->rope_neox && c->tied)
        return QV_ARCH_BITNET;
    if (c->act == QV_ACT_RELU2 && c->sub_norm && c->tied &&
        c->rope_neox == QV_ARCH_B158_NEOX)
        return QV_ARCH_BITNET_B158;
    return QV_ARCH_QVAC;
}

qv_status qv_model_save(const qv_model *m, const char *path, qv_err *err)
{
    const qv_model_config *c = &m->cfg;
    qv_gguf_writer *w = NULL;
    keep k = {0};
    qv_status s = qv_gguf_writer_new(&w, err);
    if (s)
        return s;
    qv_arch arch = qv_model_config_arch(c);
    const char *A = arch == QV_ARCH_BITNET ? "bitnet"
                    : arch == QV_ARCH_BITNET_B158 ? QV_ARCH_B158_NAME
                                                  : "qvac-bitnet";
    char key[128];
#define TRY(x) do { if ((s = (x))) goto done; } while (0)
#define KEY(suffix) akey(key, sizeof key, A, suffix)
    TRY(qv_gguf_writer_set_str(w, "general.architecture", A, err));
    TRY(qv_gguf_writer_set_str(w, "general.name", "qvac", err));
    TRY(qv_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->ctx, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn_dim, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("rope.dimension_count"),
                               (uint32_t)qv_model_head_dim(c), err));
    TRY(qv_gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta, err));
    if (c->rope_freq_scale > 0.0f && c->rope_freq_scale != 1.0f) {
        TRY(qv_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear", err));
        TRY(qv_gguf_writer_set_f32(w, KEY("rope.scaling.factor"),
                                   1.0f / c->rope_freq_scale, err));
    }
    TRY(qv_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps, err));
    TRY(qv_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab, err));
    if (arch == QV_ARCH_QVAC) {
        TRY(qv_gguf_writer_set_str(w, KEY("activation"),
                                   c->act == QV_ACT_RELU2 ? "relu2" : "silu", err));
        TRY(qv_gguf_writer_set_str(w, KEY("rope.type"),
                                   c->rope_neox ? "neox" : "norm", err));
    }
    if (c->vocab == QV_TOK_VOCAB) /* the byte tokenizer, as llama.cpp reads it */
        TRY(qv_vocab_write_bytes_bpe(w, err));
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
            qv_linear lin = L->lin[i];
            float *mul = NULL;
            if (lin.lora_mul != 0.0f && lin.lora_mul != 1.0f) {
                /* gate / up with llama.cpp's scale tensor: keep it one */
                mul = keep_alloc(&k, 4);
                if (!mul) {
                    s = qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
                    goto done;
                }
                *mul = lin.lora_mul;
                lin.scale /= lin.lora_mul;
            }
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_tensor[i]);
            TRY(add_linear(w, &k, name, &lin, err));
            if (mul) {
                int64_t one = 1;
                snprintf(name, sizeof name, "blk.%d.%s.scale", l, lin_tensor[i]);
                TRY(qv_gguf_writer_add_tensor(w, name, 1, &one, QV_GGML_F32, mul,
                                              4, err));
            }
        }
    }
    s = qv_gguf_write_file(w, path, err);
#undef TRY
#undef KEY
done:
    qv_gguf_writer_free(w);
    keep_free(&k);
    return s;
}

/* ---- reading --------------------------------------------------------------- */

static const char *type_name(uint32_t t)
{
    const char *n = qv_ggml_type_name(t);
    return n ? n : "?";
}

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

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Q6_K as ggml's dequantize_row_q6_K (ggml/src/ggml-quants.c): per 256
 * values ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8),
 * d (f16); y = d * scale * (q - 32). */
static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    uint16_t dh;
    memcpy(&dh, b + 208, 2);
    const float d = qv_f16_to_f32(dh);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            int q1 = (int)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* n values of a tensor whose type is F32, F16, BF16, Q8_0 or Q6_K into v
 * (the caller has checked the shape, so t->nbytes matches n). */
static qv_status dequant(const qv_gguf_tensor *t, size_t n, float *v,
                         qv_err *err)
{
    const uint8_t *b = t->data;
    switch (t->type) {
    case QV_GGML_F32:
        memcpy(v, b, n * 4);
        break;
    case QV_GGML_F16:
    case QV_GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            v[i] = t->type == QV_GGML_F16 ? qv_f16_to_f32(h) : bf16_to_f32(h);
        }
        break;
    case QV_GGML_Q8_0:
        for (size_t i = 0; i < n; i += 32) {
            const uint8_t *blk = b + i / 32 * 34;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            float d = qv_f16_to_f32(dh);
            for (int j = 0; j < 32; j++)
                v[i + (size_t)j] = d * (float)(int8_t)blk[2 + j];
        }
        break;
    case QV_GGML_Q6_K:
        for (size_t i = 0; i < n; i += 256)
            deq_q6_k(b + i / 256 * 210, v + i);
        break;
    default:
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "model: tensor %s has type %s; qvac reads embeddings "
                       "and norms as F32, F16, BF16, Q8_0 or Q6_K", t->name,
                       type_name(t->type));
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return qv_fail(err, QV_ERR_CORRUPT,
                           "model: tensor %s holds a NaN or infinity at "
                           "element %zu", t->name, i);
    return QV_OK;
}

/* A float tensor of exactly ne0 x ne1 elements into a new f32 array. */
static qv_status read_vec(const qv_gguf *g, const char *name, int64_t ne0,
                          int64_t ne1, float **out, qv_err *err)
{
    const qv_gguf_tensor *t;
    qv_status s = qv_gguf_get_tensor(g, name, &t, err);
    if (s)
        return s;
    int64_t n1 = t->n_dims > 1 ? t->ne[1] : 1;
    if (t->ne[0] != ne0 || n1 != ne1 || t->n_dims > 2)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "model: tensor %s is [%lld, %lld]; the header says "
                       "[%lld, %lld]", name, (long long)t->ne[0],
                       (long long)n1, (long long)ne0, (long long)ne1);
    size_t n = (size_t)ne0 * (size_t)ne1;
    float *v = malloc(n * 4);
    if (!v)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %s",
                       name);
    if ((s = dequant(t, n, v, err))) {
        free(v);
        return s;
    }
    *out = v;
    return QV_OK;
}

/* BitLinear weights stored as floats (F32 / F16 / BF16, what
 * convert_hf_to_gguf.py writes). llama.cpp's converter has already applied
 * weight_quant, so every non-zero has one magnitude s: then the codes and
 * s are read exactly (the function llama.cpp computes). Otherwise the
 * weights are a latent checkpoint and get the BitNet b1.58 absmean rule
 * as the Hugging Face BitLinear applies it (scale = mean|w| clamped at
 * 1e-5, codes = clamp(round_half_even(w * (1/scale)), -1, 1)), once. */
static qv_status read_float_linear(const qv_gguf_tensor *t, qv_linear *l,
                                   int *quantised, qv_err *err)
{
    size_t n = (size_t)l->N * (size_t)l->K;
    float *w = malloc(n * 4);
    if (!w)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %s",
                       t->name);
    qv_status s = dequant(t, n, w, err);
    if (s) {
        free(w);
        return s;
    }
    float mag = 0.0f;
    int ternary = 1;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        sum += a;
        if (a == 0.0f)
            continue;
        if (mag == 0.0f)
            mag = a;
        else if (a != mag)
            ternary = 0;
    }
    int8_t *q = (int8_t *)w; /* codes over the floats' first quarter */
    if (ternary && mag > 0.0f) {
        for (size_t i = 0; i < n; i++)
            q[i] = (int8_t)(w[i] > 0.0f ? 1 : w[i] < 0.0f ? -1 : 0);
        l->scale = mag;
        *quantised = 0;
    } else {
        float sc = (float)(sum / (double)n);
        if (!(sc >= 1e-5f))
            sc = 1e-5f;
        float is = 1.0f / sc;
        for (size_t i = 0; i < n; i++) {
            float r = nearbyintf(w[i] * is);
            q[i] = (int8_t)(r > 1.0f ? 1 : r < -1.0f ? -1 : (int)r);
        }
        l->scale = sc;
        *quantised = 1;
        l->requantised = 1;
    }
    s = qv_ternary_pack(q, l->N, l->K, l->packed, err);
    free(w);
    return s;
}

static qv_status read_linear(const qv_gguf *g, const char *name, qv_linear *l,
                             int *quantised, qv_err *err)
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
    l->file_type = t->type;
    l->packed = malloc(qv_ternary_bytes(l->N, l->K));
    if (!l->packed)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %s",
                       name);
    if (t->type == QV_GGML_TQ2_0 || t->type == QV_GGML_TQ1_0 ||
        t->type == QV_GGML_I2_S) {
        s = t->type == QV_GGML_TQ2_0
                ? qv_tq2_0_to_ternary(t->data, t->nbytes, l->N, l->K, l->packed,
                                      &l->scale, err)
            : t->type == QV_GGML_TQ1_0
                ? qv_tq1_0_to_ternary(t->data, t->nbytes, l->N, l->K, l->packed,
                                      &l->scale, err)
                : qv_i2s_to_ternary(t->data, t->nbytes, l->N, l->K, l->packed,
                                    &l->scale, err);
        if (s)
            return qv_err_prefix(err, s, "model: tensor %s", name);
        return QV_OK;
    }
    if (t->type == QV_GGML_F32 || t->type == QV_GGML_F16 ||
        t->type == QV_GGML_BF16)
        return read_float_linear(t, l, quantised, err);
    if (t->type != QV_GGML_I8)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "model: tensor %s has type %s; qvac reads BitLinear "
                       "weights as TQ2_0, TQ1_0, I2_S, F32, F16, BF16 or I8 "
                       "codes", name, type_name(t->type));
    /* qvac's own rows too short for TQ2_0: int8 codes + "<name>.scale" */
    const int8_t *c = t->data;
    for (size_t i = 0; i < n; i++)
        if (c[i] < -1 || c[i] > 1)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "model: tensor %s holds %d at element %zu; ternary "
                           "codes are -1, 0, 1", name, c[i], i);
    if ((s = qv_ternary_pack(c, l->N, l->K, l->packed, err)))
        return s;
    char sname[80];
    snprintf(sname, sizeof sname, "%.63s.scale", name);
    float *sc = NULL;
    if ((s = read_vec(g, sname, 1, 1, &sc, err)))
        return s;
    l->scale = sc[0];
    free(sc);
    if (!(l->scale > 0.0f))
        return qv_fail(err, QV_ERR_CORRUPT, "model: %s must be > 0", sname);
    return QV_OK;
}

/* llama.cpp's optional per-tensor scale "blk.N.<lin>.scale" ({1}, F32):
 * q, k, v, o and down multiply their product before the adapter is added
 * (build_lora_mm), up and gate after (build_ffn). Both fold into the
 * weight's scale; up and gate also scale the LoRA term. */
static qv_status read_lin_scale(const qv_gguf *g, int l, int i, qv_linear *lin,
                                qv_err *err)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.scale", l, lin_tensor[i]);
    lin->lora_mul = 1.0f;
    const qv_gguf_tensor *t = qv_gguf_find_tensor(g, name);
    if (!t)
        return QV_OK;
    float *v = NULL;
    qv_status s = read_vec(g, name, 1, 1, &v, err);
    if (s)
        return s;
    float sc = v[0];
    free(v);
    if (!(sc > 0.0f) || !isfinite(sc))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "model: %s = %g; a weight scale must be finite and "
                       "positive (qvac keeps one positive scale per weight)", name, (double)sc);
    lin->scale *= sc;
    lin->ext_scale = sc;
    if (i == QV_LIN_GATE || i == QV_LIN_UP)
        lin->lora_mul = sc;
    return QV_OK;
}

/* The semantics of each architecture qvac reads (docs/formats.md,
 * "Architectures"). */
typedef struct arch_rules {
    qv_arch arch;
    const char *name;    /* the key prefix */
    int act;             /* QV_ACT_*, or -1: from "<arch>.activation" */
    int rope_neox;       /* 0/1, or -1: from "<arch>.rope.type" */
    int need_sub_norm;   /* the reference graph requires the sub-norms */
    int head;            /* 0: tied (output.weight refused), 1: from the file */
    int scales;          /* llama.cpp's blk.N.*.scale tensors are read */
} arch_rules;

static qv_status decide_arch(const qv_gguf *g, const char *what,
                             arch_rules *r, qv_model *m, qv_err *err)
{
    const char *arch = NULL;
    qv_status s = qv_gguf_get_str(g, "general.architecture", &arch, NULL, err);
    if (s)
        return qv_err_prefix(err, s, "%s: not a model file", what);
    memset(r, 0, sizeof *r);
    if (!strcmp(arch, "bitnet") && qv_gguf_find_kv(g, "qvac.activation")) {
        /* written by qvac 0.1: its keys and tensors say what it computes */
        const char *act = NULL;
        if ((s = qv_gguf_get_str(g, "qvac.activation", &act, NULL, err)))
            return qv_err_prefix(err, s, "%s", what);
        if (strcmp(act, "silu") && strcmp(act, "relu2"))
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "%s: qvac.activation = '%.32s'; qvac knows silu "
                           "and relu2", what, act);
        *r = (arch_rules){QV_ARCH_BITNET_LEGACY, "bitnet",
                          strcmp(act, "silu") ? QV_ACT_RELU2 : QV_ACT_SILU, 0, 0,
                          1, 1};
        qv_append_line(m->notes, sizeof m->notes, "%s was written by qvac 0.1 (architecture 'bitnet' with "
             "qvac.* keys): read as its keys say (%s, adjacent-pair RoPE, "
             "%s head), which is not what llama.cpp computes from it; "
             "re-save it with this qvac to get a file with explicit "
             "semantics", what, act,
             qv_gguf_find_tensor(g, "output.weight") ? "untied" : "tied");
        return QV_OK;
    }
    if (!strcmp(arch, "bitnet")) {
        *r = (arch_rules){QV_ARCH_BITNET, "bitnet", QV_ACT_SILU, 1, 1, 0, 1};
        return QV_OK;
    }
    if (!strcmp(arch, QV_ARCH_B158_NAME) || !strcmp(arch, "bitnet-25")) {
        /* "bitnet-25": the name of the first 2B4T upload, same graph */
        *r = (arch_rules){QV_ARCH_BITNET_B158,
                          strcmp(arch, "bitnet-25") ? QV_ARCH_B158_NAME
                                                    : "bitnet-25",
                          QV_ACT_RELU2, QV_ARCH_B158_NEOX, 1, 0, 0};
        return QV_OK;
    }
    if (!strcmp(arch, "qvac-bitnet")) {
        *r = (arch_rules){QV_ARCH_QVAC, "qvac-bitnet", -1, -1, 0, 1, 1};
        return QV_OK;
    }
    return qv_fail(err, QV_ERR_UNSUPPORTED,
                   "%s: general.architecture = '%.64s'; qvac fine-tunes "
                   "1.58-bit models of the architectures 'bitnet' (llama.cpp: "
                   "1bitLLM bitnet_b1_58-*), '" QV_ARCH_B158_NAME "' (bitnet.cpp: "
                   "BitNet b1.58 2B4T) and 'qvac-bitnet'", what, arch);
}

/* A qvac-bitnet key that must hold one of two strings: *out = 0 for a,
 * 1 for b; missing is QV_ERR_CORRUPT, another value QV_ERR_UNSUPPORTED. */
static qv_status key_choice(const qv_gguf *g, const char *what, const char *key,
                            const char *meaning, const char *a, const char *b,
                            const char *hint, int *out, qv_err *err)
{
    const char *v = NULL;
    if (!qv_gguf_find_kv(g, key))
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: %s is missing; a qvac-bitnet file says its %s (%s "
                       "or %s)", what, key, meaning, a, b);
    qv_status s = qv_gguf_get_str(g, key, &v, NULL, err);
    if (s)
        return qv_err_prefix(err, s, "%s", what);
    if (strcmp(v, a) && strcmp(v, b))
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: %s = '%.32s'; qvac knows %s and %s%s", what, key, v, a,
                       b, hint);
    *out = !strcmp(v, b);
    return QV_OK;
}

/* Every tensor the configuration needs: present, of a type qvac reads for
 * its role, of the right shape; nothing decoded. */
static qv_status check_tensor(const qv_gguf *g, const char *what,
                              const char *name, int64_t ne0, int64_t ne1,
                              int linear, qv_err *err)
{
    const qv_gguf_tensor *t;
    qv_status s = qv_gguf_get_tensor(g, name, &t, err);
    if (s)
        return qv_err_prefix(err, s, "%s", what);
    int64_t n1 = t->n_dims > 1 ? t->ne[1] : 1;
    if (t->ne[0] != ne0 || n1 != ne1 || t->n_dims > 2)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor %s is [%lld, %lld]; the header says "
                       "[%lld, %lld]", what, name, (long long)t->ne[0],
                       (long long)n1, (long long)ne0, (long long)ne1);
    uint32_t ty = t->type;
    int ok = ty == QV_GGML_F32 || ty == QV_GGML_F16 || ty == QV_GGML_BF16 ||
             (linear ? ty == QV_GGML_TQ2_0 || ty == QV_GGML_TQ1_0 ||
                           ty == QV_GGML_I2_S || ty == QV_GGML_I8
                     : ty == QV_GGML_Q8_0 || ty == QV_GGML_Q6_K);
    if (!ok)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "%s: tensor %s has type %s; qvac reads %s", what, name,
                       type_name(ty),
                       linear ? "BitLinear weights as TQ2_0, TQ1_0, I2_S, F32, "
                                "F16, BF16 or I8 codes"
                              : "embeddings and norms as F32, F16, BF16, Q8_0 "
                                "or Q6_K");
    return QV_OK;
}

static qv_status check_tensors(const qv_gguf *g, const char *what,
                               const qv_model_config *c, qv_err *err)
{
    qv_status s;
    if ((s = check_tensor(g, what, "token_embd.weight", c->dim, c->vocab, 0, err)) ||
        (s = check_tensor(g, what, "output_norm.weight", c->dim, 1, 0, err)) ||
        (!c->tied &&
         (s = check_tensor(g, what, "output.weight", c->dim, c->vocab, 0, err))))
        return s;
    for (int l = 0; l < c->n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((s = check_tensor(g, what, name, c->dim, 1, 0, err)))
            return s;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((s = check_tensor(g, what, name, c->dim, 1, 0, err)))
            return s;
        if (c->sub_norm) {
            snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
            if ((s = check_tensor(g, what, name, c->dim, 1, 0, err)))
                return s;
            snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
            if ((s = check_tensor(g, what, name, c->ffn_dim, 1, 0, err)))
                return s;
        }
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            int32_t N, K;
            qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_tensor[i]);
            if ((s = check_tensor(g, what, name, K, N, 1, err)))
                return s;
        }
    }
    return QV_OK;
}

/* Decides the configuration and checks every key and tensor (shallow):
 * fills m->cfg and m->notes, allocates nothing. */
static qv_status plan(const qv_gguf *g, const char *what, qv_model *m,
                      qv_err *err)
{
    arch_rules R;
    qv_status s = decide_arch(g, what, &R, m, err);
    if (s)
        return s;
    const char *A = R.name;
    char k[128];
    qv_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = (int)R.arch;
#define FAIL(code, ...) do { s = qv_fail(err, code, __VA_ARGS__); goto fail; } while (0)
#define TRY(x) do { if ((s = (x))) { qv_err_prefix(err, s, "%s", what); goto fail; } } while (0)
    TRY(get_u32(g, akey(k, sizeof k, A, "context_length"), &c.ctx, err));
    TRY(get_u32(g, akey(k, sizeof k, A, "embedding_length"), &c.dim, err));
    TRY(get_u32(g, akey(k, sizeof k, A, "block_count"), &c.n_layers, err));
    TRY(get_u32(g, akey(k, sizeof k, A, "feed_forward_length"), &c.ffn_dim, err));
    TRY(get_u32(g, akey(k, sizeof k, A, "attention.head_count"), &c.n_heads, err));
    TRY(qv_gguf_get_f32(g, akey(k, sizeof k, A, "attention.layer_norm_rms_epsilon"),
                        &c.norm_eps, err));
    c.n_kv_heads = c.n_heads;
    if (qv_gguf_find_kv(g, akey(k, sizeof k, A, "attention.head_count_kv")))
        TRY(get_u32(g, k, &c.n_kv_heads, err));
    c.rope_theta = 10000.0f;
    if (qv_gguf_find_kv(g, akey(k, sizeof k, A, "rope.freq_base")))
        TRY(qv_gguf_get_f32(g, k, &c.rope_theta, err));
    c.rope_freq_scale = 1.0f;
    if (qv_gguf_find_kv(g, akey(k, sizeof k, A, "rope.scaling.type"))) {
        const char *st = NULL;
        TRY(qv_gguf_get_str(g, k, &st, NULL, err));
        if (strcmp(st, "none") && strcmp(st, "linear"))
            FAIL(QV_ERR_UNSUPPORTED,
                 "%s: %s = '%.32s'; qvac computes RoPE scaling 'none' and "
                 "'linear' only", what, k, st);
        if (!strcmp(st, "linear") &&
            qv_gguf_find_kv(g, akey(k, sizeof k, A, "rope.scaling.factor"))) {
            float f = 0.0f;
            TRY(qv_gguf_get_f32(g, k, &f, err));
            if (!(f > 0.0f) || !isfinite(f))
                FAIL(QV_ERR_CORRUPT, "%s: %s = %g must be > 0", what, k,
                     (double)f);
            c.rope_freq_scale = 1.0f / f;
        }
    }
    if (qv_gguf_find_kv(g, akey(k, sizeof k, A, "rope.dimension_count")) &&
        c.n_heads > 0) {
        int32_t nrot = 0;
        TRY(get_u32(g, k, &nrot, err));
        if (nrot != c.dim / c.n_heads)
            FAIL(QV_ERR_UNSUPPORTED,
                 "%s: %s = %d but the head dimension is %d; qvac rotates "
                 "whole heads only", what, k, nrot, c.dim / c.n_heads);
    }
    /* activation and RoPE pairing: the architecture's, or qvac-bitnet's keys */
    c.act = R.act;
    if (R.act < 0 &&
        (s = key_choice(g, what, akey(k, sizeof k, A, "activation"), "FFN activation",
                        "silu", "relu2", "", &c.act, err)))
        goto fail;
    c.rope_neox = R.rope_neox;
    if (R.rope_neox < 0 &&
        (s = key_choice(g, what, akey(k, sizeof k, A, "rope.type"), "RoPE pairing",
                        "norm", "neox",
                        " (norm: adjacent pairs, neox: pairs offset by half a head)",
                        &c.rope_neox, err)))
        goto fail;
    /* sub-norms, head */
    c.sub_norm = qv_gguf_find_tensor(g, "blk.0.attn_sub_norm.weight") != NULL;
    if (R.need_sub_norm && !c.sub_norm)
        FAIL(QV_ERR_CORRUPT,
             "%s: blk.0.attn_sub_norm.weight is missing; the '%s' graph "
             "requires the attention and FFN sub-norms", what, A);
    int has_out = qv_gguf_find_tensor(g, "output.weight") != NULL;
    if (!R.head && has_out)
        FAIL(QV_ERR_UNSUPPORTED,
             "%s: the file has output.weight, but the '%s' graph ties the "
             "head to token_embd and its runtime refuses the extra tensor; "
             "drop output.weight or label the file 'qvac-bitnet'", what, A);
    c.tied = !has_out;
    /* vocabulary */
    const qv_gguf_tensor *emb;
    TRY(qv_gguf_get_tensor(g, "token_embd.weight", &emb, err));
    if (emb->n_dims != 2 || emb->ne[1] > INT32_MAX || emb->ne[0] != c.dim)
        FAIL(QV_ERR_CORRUPT,
             "%s: token_embd.weight is [%lld, %lld]; expected [%d, vocab]",
             what, (long long)emb->ne[0], (long long)emb->ne[1], c.dim);
    c.vocab = (int32_t)emb->ne[1];
    if (qv_gguf_find_kv(g, akey(k, sizeof k, A, "vocab_size"))) {
        int32_t v = 0;
        TRY(get_u32(g, k, &v, err));
        if (v != c.vocab)
            FAIL(QV_ERR_CORRUPT,
                 "%s: %s = %d but token_embd.weight has %d rows", what, k, v,
                 c.vocab);
    }
    if (qv_gguf_find_kv(g, "tokenizer.ggml.tokens")) {
        const qv_gguf_kv *kv = qv_gguf_find_kv(g, "tokenizer.ggml.tokens");
        if (kv->type != QV_GGUF_ARRAY || kv->n != (size_t)c.vocab)
            FAIL(QV_ERR_CORRUPT,
                 "%s: tokenizer.ggml.tokens has %zu tokens but "
                 "token_embd.weight has %d rows; the vocabulary does not "
                 "match the embedding", what, kv->n, c.vocab);
    } else if (qv_gguf_find_kv(g, "qvac.tokenizer")) {
        const char *tk = NULL;
        TRY(qv_gguf_get_str(g, "qvac.tokenizer", &tk, NULL, err));
        if (strcmp(tk, "bytes") || c.vocab != QV_TOK_VOCAB)
            FAIL(QV_ERR_CORRUPT,
                 "%s: qvac.tokenizer = '%.16s' with %d embedding rows; qvac's "
                 "byte tokenizer has %d tokens", what, tk, c.vocab,
                 QV_TOK_VOCAB);
    }
    if ((s = qv_model_config_check(&c, err))) {
        qv_err_prefix(err, QV_ERR_CORRUPT, "%s", what);
        s = QV_ERR_CORRUPT;
        goto fail;
    }
    uint64_t nt, no;
    qv_model_count(&c, &nt, &no);
    if (nt + no > ((uint64_t)1 << 36))
        FAIL(QV_ERR_UNSUPPORTED, "%s: %llu parameters is more than qvac "
             "handles", what, (unsigned long long)(nt + no));
    if ((s = check_tensors(g, what, &c, err)))
        goto fail;
    for (int l = 0; l < c.n_layers; l++)
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.scale", l, lin_tensor[i]);
            if (!R.scales && qv_gguf_find_tensor(g, name))
                FAIL(QV_ERR_UNSUPPORTED,
                     "%s: %s: the '%s' graph has no per-tensor scale tensors "
                     "and its runtime refuses them", what, name, A);
        }
    m->cfg = c;
    return QV_OK;
#undef FAIL
#undef TRY
fail:
    return s;
}

qv_status qv_model_inspect(const qv_gguf *g, const char *what,
                           qv_model_config *cfg, char *notes, size_t notes_n,
                           qv_err *err)
{
    qv_model *m = calloc(1, sizeof *m);
    if (!m)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    qv_status s = plan(g, what, m, err);
    if (!s) {
        *cfg = m->cfg;
        if (notes && notes_n)
            snprintf(notes, notes_n, "%s", m->notes);
    }
    free(m);
    return s;
}

static qv_status load_gguf(const qv_gguf *g, const char *what, qv_model **out,
                           qv_err *err)
{
    qv_model *m = calloc(1, sizeof *m);
    if (!m)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    qv_status s = plan(g, what, m, err);
    if (s) {
        free(m);
        return s;
    }
    qv_model_config c = m->cfg;
    m->layers = calloc((size_t)c.n_layers, sizeof *m->layers);
    if (!m->layers) {
        s = qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
        goto fail;
    }
    if ((s = read_vec(g, "token_embd.weight", c.dim, c.vocab, &m->tok_emb, err)) ||
        (s = read_vec(g, "output_norm.weight", c.dim, 1, &m->out_norm, err)) ||
        (!c.tied && (s = read_vec(g, "output.weight", c.dim, c.vocab, &m->head, err))))
        goto fail;
    {
        const qv_gguf_tensor *ht = qv_gguf_find_tensor(g, c.tied ? "token_embd.weight"
                                                              : "output.weight");
        m->head_file_type = ht ? ht->type : 0;
    }
    int quantised = 0, float_exact = 0;
    uint32_t lin_type = UINT32_MAX;
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
            int q = 0;
            if ((s = read_linear(g, name, lin, &q, err)) ||
                (s = read_lin_scale(g, l, i, lin, err)))
                goto fail;

            const qv_gguf_tensor *t = qv_gguf_find_tensor(g, name);
            lin_type = t->type;
            if (t->type == QV_GGML_F32 || t->type == QV_GGML_F16 ||
                t->type == QV_GGML_BF16) {
                quantised += q;
                float_exact += !q;
            }
        }
    }
    if (quantised)
        qv_append_line(m->notes, sizeof m->notes, "%s: %d BitLinear weights stored as %s were quantised to "
             "ternary at load (BitNet b1.58 absmean: scale = mean|w|, codes "
             "round(w / scale) clamped to -1..1)", what, quantised,
             type_name(lin_type));
    if (float_exact)
        qv_append_line(m->notes, sizeof m->notes, "%s: %d BitLinear weights stored as %s were already ternary "
             "(one magnitude per tensor): codes and scale read exactly",
             what, float_exact, type_name(lin_type));
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
