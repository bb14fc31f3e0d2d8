/* train/model.c — see model.h. */
#include "train/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "kernels/ternary.h"

/* splitmix64: the model's own generator, so that the model code links
 * without the compute layer (the fuzz target for the loader does). */
typedef struct qv_rng {
    uint64_t s;
} qv_rng;

static uint64_t qv_rng_next(qv_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *lin_names[QV_LIN_COUNT] = {"q",    "k",  "v",   "o",
                                              "gate", "up", "down"};

const char *qv_arch_name(qv_arch a)
{
    switch (a) {
    case QV_ARCH_BITNET: return "bitnet";
    case QV_ARCH_BITNET_B158: return "bitnet-b1.58";
    case QV_ARCH_QVAC: return "qvac-bitnet";
    case QV_ARCH_BITNET_LEGACY: return "bitnet (qvac 0.1 keys)";
    }
    return "?";
}

const char *qv_arch_file_name(qv_arch a)
{
    switch (a) {
    case QV_ARCH_BITNET_B158: return QV_ARCH_B158_NAME;
    case QV_ARCH_QVAC: return "qvac-bitnet";
    default: return "bitnet";
    }
}

const char *qv_lin_name(qv_lin_id id)
{
    return id < QV_LIN_COUNT ? lin_names[id] : "?";
}

qv_status qv_lin_parse_targets(const char *s, unsigned *mask, qv_err *err)
{
    *mask = 0;
    if (!s || !*s)
        return qv_fail(err, QV_ERR_INVALID,
                       "--targets: empty; give a list such as q,v or all");
    if (!strcmp(s, "all")) {
        *mask = (1u << QV_LIN_COUNT) - 1;
        return QV_OK;
    }
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < QV_LIN_COUNT; i++)
            if (strlen(lin_names[i]) == len && !strncmp(p, lin_names[i], len))
                found = i;
        if (found < 0)
            return qv_fail(err, QV_ERR_INVALID,
                           "--targets: '%.*s' is not a module; use q, k, v, "
                           "o, gate, up, down or all", (int)len, p);
        *mask |= 1u << found;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!*mask)
        return qv_fail(err, QV_ERR_INVALID, "--targets: no module named");
    return QV_OK;
}

void qv_lin_format_targets(unsigned mask, char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < QV_LIN_COUNT && off + 6 < n; i++)
        if (mask & (1u << i))
            off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? "," : "",
                                    lin_names[i]);
}

qv_status qv_model_config_check(const qv_model_config *c, qv_err *err)
{
    if (c->vocab < 1 || c->dim < 2 || c->n_layers < 1 || c->n_heads < 1 ||
        c->n_kv_heads < 1 || c->ffn_dim < 1 || c->ctx < 1 ||
        c->vocab > (1 << 20) || c->dim > 65536 || c->ffn_dim > 262144 ||
        c->n_layers > 1024 || c->ctx > (1 << 20))
        return qv_fail(err, QV_ERR_INVALID,
                       "model: sizes out of range (vocab %d, dim %d, layers "
                       "%d, heads %d/%d, ffn %d, ctx %d)", c->vocab, c->dim,
                       c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim,
                       c->ctx);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads)
        return qv_fail(err, QV_ERR_INVALID,
                       "model: %d heads must divide dim %d and %d kv heads "
                       "must divide the heads", c->n_heads, c->dim,
                       c->n_kv_heads);
    int32_t hd = c->dim / c->n_heads;
    if (hd % 2 || hd > 128)
        return qv_fail(err, QV_ERR_INVALID,
                       "model: head dimension %d must be even and at most 128",
                       hd);
    if (!(c->rope_theta > 0.0f) || !(c->norm_eps > 0.0f) ||
        (c->act != QV_ACT_SILU && c->act != QV_ACT_RELU2))
        return qv_fail(err, QV_ERR_INVALID,
                       "model: rope theta and norm epsilon must be > 0 and "
                       "the activation silu or relu2");
    return QV_OK;
}

void qv_model_lin_shape(const qv_model_config *c, qv_lin_id id, int32_t *N,
                        int32_t *K)
{
    int32_t hd = c->dim / c->n_heads;
    switch (id) {
    case QV_LIN_Q: *N = c->dim; *K = c->dim; break;
    case QV_LIN_K:
    case QV_LIN_V: *N = c->n_kv_heads * hd; *K = c->dim; break;
    case QV_LIN_O: *N = c->dim; *K = c->dim; break;
    case QV_LIN_GATE:
    case QV_LIN_UP: *N = c->ffn_dim; *K = c->dim; break;
    default: *N = c->dim; *K = c->ffn_dim; break;
    }
}

void qv_model_count(const qv_model_config *c, uint64_t *ternary,
                    uint64_t *other)
{
    uint64_t t = 0;
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        int32_t N, K;
        qv_model_lin_shape(c, (qv_lin_id)i, &N, &K);
        t += (uint64_t)N * (uint64_t)K;
    }
    uint64_t norms = 2u * (uint64_t)c->dim +
                     (c->sub_norm ? (uint64_t)c->dim + (uint64_t)c->ffn_dim : 0);
    *ternary = t * (uint64_t)c->n_layers;
    *other = (uint64_t)c->vocab * (uint64_t)c->dim * (c->tied ? 1u : 2u) +
             (uint64_t)c->dim + norms * (uint64_t)c->n_layers;
}

static float gauss(qv_rng *r)
{
    double u1 = ((double)(qv_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(qv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static float *ones(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (p)
        for (size_t i = 0; i < n; i++)
            p[i] = 1.0f;
    return p;
}

void qv_model_free(qv_model **pm)
{
    if (!pm || !*pm)
        return;
    qv_model *m = *pm;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            qv_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->attn_sub_norm);
            free(L->ffn_sub_norm);
            for (int i = 0; i < QV_LIN_COUNT; i++) {
                free(L->lin[i].packed);
                free(L->lin[i].w);
            }
        }
    free(m->layers);
    free(m->tok_emb);
    free(m->out_norm);
    free(m->head);
    free(m);
    *pm = NULL;
}

static qv_status quantize_lin(qv_linear *l, qv_err *err)
{
    int8_t *q = malloc((size_t)l->N * (size_t)l->K);
    if (!q)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    qv_status s = qv_ternary_quantize(l->w, l->N, l->K, q, &l->scale, err);
    if (!s)
        s = qv_ternary_pack(q, l->N, l->K, l->packed, err);
    free(q);
    if (s)
        return s;
    /* the file keeps the scale in f16 (TQ2_0's d): train with that value */
    l->scale = qv_f16_to_f32(qv_f32_to_f16(l->scale));
    if (!(l->scale > 0.0f))
        l->scale = 6.1035156e-05f; /* smallest normal f16 */
    return QV_OK;
}

qv_status qv_model_requantize(qv_model *m, qv_err *err)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            qv_linear *lin = &m->layers[l].lin[i];
            if (!lin->w)
                continue;
            qv_status s = quantize_lin(lin, err);
            if (s)
                return s;
        }
    return QV_OK;
}

void qv_model_drop_shadow(qv_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            free(m->layers[l].lin[i].w);
            m->layers[l].lin[i].w = NULL;
        }
}

static qv_status init(const qv_model_config *cfg, uint64_t seed, int shadow,
                      qv_model **out, qv_err *err);

qv_status qv_model_init_random(const qv_model_config *cfg, uint64_t seed,
                               qv_model **out, qv_err *err)
{
    return init(cfg, seed, 1, out, err);
}

qv_status qv_model_init_synthetic(const qv_model_config *cfg, uint64_t seed,
                                  qv_model **out, qv_err *err)
{
    return init(cfg, seed, 0, out, err);
}

static qv_status init(const qv_model_config *cfg, uint64_t seed, int shadow,
                      qv_model **out, qv_err *err)
{
    *out = NULL;
    qv_status s = qv_model_config_check(cfg, err);
    if (s)
        return s;
    qv_model *m = calloc(1, sizeof *m);
    if (!m)
        return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory");
    m->cfg = *cfg;
    m->cfg.arch = (int)qv_model_config_arch(cfg);
    if (!(m->cfg.rope_freq_scale > 0.0f))
        m->cfg.rope_freq_scale = 1.0f;
    qv_rng r = {seed ^ 0x5eedb17e7ull};
    size_t VD = (size_t)cfg->vocab * (size_t)cfg->dim;
    m->tok_emb = malloc(VD * sizeof(float));
    m->out_norm = ones((size_t)cfg->dim);
    m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!cfg->tied)
        m->head = malloc(VD * sizeof(float));
    if (!m->tok_emb || !m->out_norm || !m->layers || (!cfg->tied && !m->head))
        goto nomem;
    for (size_t i = 0; i < VD; i++)
        m->tok_emb[i] = 0.02f * gauss(&r);
    /* an untied head of std 1/sqrt(dim) starts with unit-scale logits */
    if (m->head)
        for (size_t i = 0; i < VD; i++)
            m->head[i] = gauss(&r) / sqrtf((float)cfg->dim);
    /* a synthetic model stands for a released checkpoint, whose embedding
     * and head are stored in 16 bits: round them to half, so that a
     * fine-tune holds them as it would a real model's */
    for (size_t i = 0; !shadow && i < VD; i++) {
        m->tok_emb[i] = qv_f16_to_f32(qv_f32_to_f16(m->tok_emb[i]));
        if (m->head)
            m->head[i] = qv_f16_to_f32(qv_f32_to_f16(m->head[i]));
    }
    for (int l = 0; l < cfg->n_layers; l++) {
        qv_layer *L = &m->layers[l];
        L->attn_norm = ones((size_t)cfg->dim);
        L->ffn_norm = ones((size_t)cfg->dim);
        if (!L->attn_norm || !L->ffn_norm)
            goto nomem;
        if (cfg->sub_norm) {
            L->attn_sub_norm = ones((size_t)cfg->dim);
            L->ffn_sub_norm = ones((size_t)cfg->ffn_dim);
            if (!L->attn_sub_norm || !L->ffn_sub_norm)
                goto nomem;
        }
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            qv_linear *lin = &L->lin[i];
            qv_model_lin_shape(cfg, (qv_lin_id)i, &lin->N, &lin->K);
            lin->lora_mul = 1.0f;
            size_t n = (size_t)lin->N * (size_t)lin->K;
            lin->packed = malloc(qv_ternary_bytes(lin->N, lin->K));
            if (!lin->packed)
                goto nomem;
            if (!shadow) {
                /* codes straight from the generator, about 1/3 each */
                int8_t *q = malloc(n);
                if (!q)
                    goto nomem;
                for (size_t j = 0; j < n; j++)
                    q[j] = (int8_t)((int)(qv_rng_next(&r) % 3u) - 1);
                s = qv_ternary_pack(q, lin->N, lin->K, lin->packed, err);
                free(q);
                if (s) {
                    qv_model_free(&m);
                    return s;
                }
                lin->scale = qv_f16_to_f32(qv_f32_to_f16(0.02f));
                continue;
            }
            lin->w = malloc(n * sizeof(float));
            if (!lin->w)
                goto nomem;
            for (size_t j = 0; j < n; j++)
                lin->w[j] = 0.02f * gauss(&r);
            if ((s = quantize_lin(lin, err))) {
                qv_model_free(&m);
                return s;
            }
        }
    }
    *out = m;
    return QV_OK;
nomem:
    qv_model_free(&m);
    return qv_fail(err, QV_ERR_NOMEM, "model: out of host memory for %d "
                   "layers of dim %d", cfg->n_layers, cfg->dim);
}
