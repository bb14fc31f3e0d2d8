/* train/net.c — see net.h. The forward and backward passes are written out
 * layer by layer as kernel launches; comments give the maths. */
#include "train/net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/tune.h"
#include "common/half.h"
#include "formats/gguf.h"
#include "kernels/ternary.h"
#include "kernels/verify.h"

#define MAX_CFGS 64

typedef struct param {
    qv_param_info info;
    qv_buffer *p, *g, *m1, *m2;
    int32_t n;
    int decay;
} param;

typedef struct lin_dev {
    int32_t N, K;
    float scale;
    float lora_scale;  /* the net's alpha / r times the linear's lora_mul */
    qv_buffer *packed; /* ternary */
    qv_buffer *w16;    /* f16 */
    qv_buffer *w32;    /* ternary with ste_surrogate: q * scale in f32 */
    int shadow;        /* param index of the f32 shadow weight, or -1 */
    int pa, pb;        /* param indices of LoRA A (r,K) and B (N,r), or -1 */
    qv_buffer *H;      /* LoRA hidden (T, r): activation */
    int round;         /* act_quant llamacpp: act_round mode of its input */
    float ext;         /* act_quant llamacpp: the file's scale tensor, applied
                          to the product as llama.cpp does (0: none) */
} lin_dev;

typedef struct layer_dev {
    int attn_norm, ffn_norm, attn_sub, ffn_sub; /* param indices or -1 */
    qv_buffer *attn_norm_b, *ffn_norm_b, *attn_sub_b, *ffn_sub_b;
    lin_dev lin[QV_LIN_COUNT];
    /* activations */
    qv_buffer *xn1, *q, *k, *v, *att, *att_n, *x_mid, *xn2, *g, *u, *h, *h_n;
} layer_dev;

typedef struct cfg_entry {
    const qv_kernel_decl *k;
    qv_shape s;
    qv_config c;
} cfg_entry;

struct qv_net {
    qv_device *dev;
    qv_model_config cfg;
    qv_net_opts o;
    int32_t T, D, F, V, Hq, Hkv, hd, kvd, r;
    float lora_scale;
    /* frozen (or shadow-trained) non-linear weights; frozen embeddings and
     * head are held in IEEE half (emb16) when every value is a half
     * exactly (an F16 or BF16 file: half the memory, the same function),
     * else, and when trained, in f32 */
    qv_buffer *tok_emb, *out_norm, *head;
    int emb16;
    int p_emb, p_out_norm, p_head;
    /* act_quant llamacpp: the rounded copy of the input last rounded (of
     * xr_src, by mode xr_mode) and the head's rounding mode */
    qv_buffer *xr, *xr_src;
    int xr_mode, head_round;
    /* A frozen embedding or head larger than the device's largest
     * allocation (a 128k vocabulary on a 128 MiB Vulkan limit) is held in
     * n_vb blocks of vb_rows rows (the last may be shorter); then tok_emb
     * and head are NULL and emb_b / head_b hold the blocks (head_b ==
     * emb_b when tied). ids_b: the token ids shifted to each block. */
    int n_vb;
    int32_t vb_rows;
    qv_buffer **emb_b, **head_b, **ids_b, *vb_logits;
    int32_t *ids_host;
    layer_dev *L;
    param *params;
    int n_params, cap_params;
    /* activations */
    qv_buffer **x; /* n_layers + 1 residual streams (T, D) */
    qv_buffer *xf, *logits, *dlogits, *loss, *ids, *tgt;
    /* workspace */
    qv_buffer *cs, *xq, *xs, *wsD[2], *wsF[3], *dq, *dk, *dv, *attL, *attD,
        *rstd, *dgj, *dH, *dA, *dB, *red;
    size_t red_n;
    float *red_host;  /* red_n partial sums, read back */
    float *loss_host; /* T per-token losses, read back */
    cfg_entry cfgs[MAX_CFGS];
    int n_cfgs;
    int have_logits;
};

const qv_model_config *qv_net_model_config(const qv_net *n)
{
    return &n->cfg;
}

const char *qv_weights_name(qv_weights w)
{
    return w == QV_WEIGHTS_F16 ? "f16" : "ternary";
}

const char *qv_act_quant_name(qv_act_quant a)
{
    return a == QV_ACTQ_LLAMACPP ? "llamacpp" : "bitnet";
}

qv_status qv_act_quant_parse(const char *s, qv_act_quant *out, qv_err *err)
{
    if (!strcmp(s, "bitnet"))
        *out = QV_ACTQ_BITNET;
    else if (!strcmp(s, "llamacpp"))
        *out = QV_ACTQ_LLAMACPP;
    else
        return qv_fail(err, QV_ERR_INVALID,
                       "--act-quant '%.32s': use bitnet (BitNet b1.58's per-token "
                       "int8, what qvac trains with) or llamacpp (what "
                       "llama.cpp's CPU backend computes)", s);
    return QV_OK;
}

/* ---- launching ------------------------------------------------------------ */

/* The configuration for kernel k at shape s: the autotuner's, looked up
 * once per shape, else the default. */
static const qv_config *config_for(qv_net *n, const qv_kernel_decl *k,
                                   qv_shape s)
{
    if (!n->o.cache)
        return NULL;
    for (int i = 0; i < n->n_cfgs; i++)
        if (n->cfgs[i].k == k && !memcmp(&n->cfgs[i].s, &s, sizeof s))
            return &n->cfgs[i].c;
    if (n->n_cfgs == MAX_CFGS)
        return NULL;
    cfg_entry *e = &n->cfgs[n->n_cfgs];
    int tuned = 0;
    if (qv_tune_lookup(n->o.cache, n->dev, k, s, &e->c, &tuned, NULL))
        return NULL;
    e->k = k;
    e->s = s;
    n->n_cfgs++;
    return &e->c;
}

/* QVAC_PROFILE=1 in the environment: every launch waits for its device
 * time, summed per kernel and printed to stderr when the net is freed. */
typedef struct prof_entry {
    const char *name;
    double ns;
    long calls;
} prof_entry;
static prof_entry g_prof[64];

static qv_status run(qv_net *n, const char *name, qv_shape s,
                     const qv_arg *args, int nargs, qv_err *err)
{
    const qv_kernel_decl *k = qv_kernel_find(name);
    if (!k)
        return qv_fail(err, QV_ERR_NOT_FOUND, "train: no kernel %s", name);
    static int profile = -1;
    if (profile < 0)
        profile = getenv("QVAC_PROFILE") && strcmp(getenv("QVAC_PROFILE"), "0");
    uint64_t ns = 0;
    qv_status st = qv_launch(n->dev, name, config_for(n, k, s), args, nargs,
                             profile ? &ns : NULL, err);
    for (int i = 0; profile && i < 64; i++)
        if (!g_prof[i].name || !strcmp(g_prof[i].name, name)) {
            g_prof[i].name = name;
            g_prof[i].ns += (double)ns;
            g_prof[i].calls++;
            break;
        }
    return st;
}

static void prof_print(void)
{
    double total = 0;
    for (int i = 0; i < 64 && g_prof[i].name; i++)
        total += g_prof[i].ns;
    for (int i = 0; i < 64 && g_prof[i].name; i++)
        fprintf(stderr, "profile %-18s %8ld calls %10.1f ms %5.1f%%\n",
                g_prof[i].name, g_prof[i].calls, g_prof[i].ns / 1e6,
                100.0 * g_prof[i].ns / (total > 0 ? total : 1));
    memset(g_prof, 0, sizeof g_prof); /* each net reports its own */
}

#define LAUNCH(name, s, ...)                                                   \
    do {                                                                       \
        qv_arg a_[] = {__VA_ARGS__};                                           \
        qv_status st_ = run(n, name, s, a_, (int)(sizeof a_ / sizeof a_[0]),   \
                            err);                                              \
        if (st_)                                                               \
            return st_;                                                        \
    } while (0)

#define B_(b) QV_ARG_B(b)
#define I_(v) QV_ARG_I(v)
#define F_(v) QV_ARG_F(v)
#define S0 ((qv_shape){0, 0, 0, 0})
#define SH(M, N, K, R) ((qv_shape){(M), (N), (K), (R)})

static qv_status fill(qv_net *n, qv_buffer *b, int32_t count, float v,
                      qv_err *err)
{
    LAUNCH("fill", S0, B_(b), I_(count), F_(v));
    return QV_OK;
}

static qv_status axpby(qv_net *n, qv_buffer *x, qv_buffer *y, int32_t count,
                       float alpha, float beta, qv_err *err)
{
    LAUNCH("axpby", S0, B_(x), B_(y), I_(count), F_(alpha), F_(beta));
    return QV_OK;
}

static qv_status rmsnorm(qv_net *n, qv_buffer *x, qv_buffer *g, qv_buffer *y,
                         int32_t D, qv_err *err)
{
    LAUNCH("rmsnorm", S0, B_(x), B_(g), B_(y), I_(n->T), I_(D),
           F_(n->cfg.norm_eps));
    return QV_OK;
}

/* dX += d rmsnorm; the gain's gradient into param pg (or the junk buffer). */
static qv_status rmsnorm_bwd(qv_net *n, qv_buffer *x, qv_buffer *g, int pg,
                             qv_buffer *dy, qv_buffer *dx, int32_t D,
                             qv_err *err)
{
    qv_buffer *dg = pg >= 0 ? n->params[pg].g : n->dgj;
    LAUNCH("rmsnorm_bwd", S0, B_(x), B_(g), B_(dy), B_(n->rstd), B_(dx),
           B_(dg), I_(n->T), I_(D), F_(n->cfg.norm_eps));
    return QV_OK;
}

/* ---- parameters ----------------------------------------------------------- */

static qv_status buf(qv_net *n, qv_mem_tag tag, size_t bytes, qv_buffer **out,
                     qv_err *err)
{
    qv_mem_tag old = qv_device_set_tag(n->dev, tag);
    qv_status s = qv_buffer_new(n->dev, bytes ? bytes : 4, out, err);
    qv_device_set_tag(n->dev, old);
    return s;
}

/* Registers a trained parameter of rows x cols f32 values with its value
 * uploaded from host (or zeros when host is NULL). */
static qv_status add_param(qv_net *n, const char *name, int layer, int lin,
                           int32_t rows, int32_t cols, const float *host,
                           int decay, qv_mem_tag value_tag, int *idx,
                           qv_err *err)
{
    if (n->n_params == n->cap_params) {
        int cap = n->cap_params ? 2 * n->cap_params : 64;
        param *p = realloc(n->params, (size_t)cap * sizeof *p);
        if (!p)
            return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        n->params = p;
        n->cap_params = cap;
    }
    param *p = &n->params[n->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->info.name, sizeof p->info.name, "%s", name);
    p->info.rows = rows;
    p->info.cols = cols;
    p->info.layer = layer;
    p->info.lin = lin;
    p->n = rows * cols;
    p->decay = decay;
    size_t bytes = (size_t)p->n * 4;
    qv_status s;
    if ((s = buf(n, value_tag, bytes, &p->p, err)) ||
        (s = buf(n, QV_MEM_GRADIENTS, bytes, &p->g, err)) ||
        (s = buf(n, QV_MEM_OPTIMIZER, bytes, &p->m1, err)) ||
        (s = buf(n, QV_MEM_OPTIMIZER, bytes, &p->m2, err)))
        goto fail;
    if (host)
        s = qv_buffer_write(p->p, 0, host, bytes, err);
    else
        s = fill(n, p->p, p->n, 0.0f, err);
    if (!s)
        s = fill(n, p->m1, p->n, 0.0f, err);
    if (!s)
        s = fill(n, p->m2, p->n, 0.0f, err);
    if (!s)
        s = fill(n, p->g, p->n, 0.0f, err);
    if (s)
        goto fail;
    *idx = n->n_params++;
    return QV_OK;
fail:
    qv_buffer_destroy(&p->p);
    qv_buffer_destroy(&p->g);
    qv_buffer_destroy(&p->m1);
    qv_buffer_destroy(&p->m2);
    return s;
}

/* A frozen f32 vector/matrix, or a trained one in full mode. */
static qv_status add_f32(qv_net *n, const char *name, int layer, int32_t rows,
                         int32_t cols, const float *host, int *pidx,
                         qv_buffer **b, qv_err *err)
{
    *pidx = -1;
    if (n->o.full) {
        qv_status s = add_param(n, name, layer, -1, rows, cols, host, 0,
                                QV_MEM_WEIGHTS, pidx, err);
        if (!s)
            *b = n->params[*pidx].p;
        return s;
    }
    size_t bytes = (size_t)rows * (size_t)cols * 4;
    qv_status s = buf(n, QV_MEM_WEIGHTS, bytes, b, err);
    if (!s)
        s = qv_buffer_write(*b, 0, host, bytes, err);
    return s;
}

/* A frozen matrix in IEEE half. */
/* 1 when every value survives the round trip through IEEE half. */
static int f16_exact(const float *v, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (qv_f16_to_f32(qv_f32_to_f16(v[i])) != v[i])
            return 0;
    return 1;
}

static qv_status upload_f16(qv_net *n, const float *host, size_t count,
                            qv_buffer **b, qv_err *err)
{
    uint16_t *h = malloc(count * 2);
    if (!h)
        return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
    for (size_t i = 0; i < count; i++)
        h[i] = qv_f32_to_f16(host[i]);
    qv_status s = buf(n, QV_MEM_WEIGHTS, count * 2, b, err);
    if (!s)
        s = qv_buffer_write(*b, 0, h, count * 2, err);
    free(h);
    return s;
}

/* Rows of the embedding and head of a frozen model, by blocks of at most
 * max_rows rows, each its own buffer (see n_vb). */
static qv_status upload_vocab_blocks(qv_net *n, const qv_model *m, uint64_t max_rows,
                                     qv_err *err)
{
    int32_t V = n->V, D = n->D;
    if (max_rows < 1)
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "train: one embedding row of %d values does not fit the "
                       "device's largest allocation", D);
    n->vb_rows = max_rows < (uint64_t)V ? (int32_t)max_rows : V;
    n->n_vb = (int)((V + n->vb_rows - 1) / n->vb_rows);
    n->emb_b = calloc((size_t)n->n_vb, sizeof *n->emb_b);
    n->ids_b = calloc((size_t)n->n_vb, sizeof *n->ids_b);
    n->ids_host = malloc((size_t)n->T * 4);
    n->head_b = m->cfg.tied ? n->emb_b : calloc((size_t)n->n_vb, sizeof *n->head_b);
    if (!n->emb_b || !n->ids_b || !n->head_b || !n->ids_host)
        return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
    qv_status s;
    for (int b = 0; b < n->n_vb; b++) {
        int32_t r0 = b * n->vb_rows;
        int32_t rows = V - r0 < n->vb_rows ? V - r0 : n->vb_rows;
        size_t cnt = (size_t)rows * (size_t)D, off = (size_t)r0 * (size_t)D;
        int dummy;
        if ((s = n->emb16 ? upload_f16(n, m->tok_emb + off, cnt, &n->emb_b[b], err)
                          : add_f32(n, "token_embd.weight", -1, rows, D,
                                    m->tok_emb + off, &dummy, &n->emb_b[b], err)))
            return s;
        if (!m->cfg.tied &&
            (s = n->emb16 ? upload_f16(n, m->head + off, cnt, &n->head_b[b], err)
                          : add_f32(n, "output.weight", -1, rows, D, m->head + off,
                                    &dummy, &n->head_b[b], err)))
            return s;
        if ((s = buf(n, QV_MEM_ACTIVATIONS, (size_t)n->T * 4, &n->ids_b[b], err)))
            return s;
    }
    return QV_OK;
}

static const char *gguf_lin[QV_LIN_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
    "ffn_down",
};

static qv_status upload_linear(qv_net *n, int l, int i, const qv_linear *hl,
                               qv_err *err)
{
    lin_dev *ld = &n->L[l].lin[i];
    ld->N = hl->N;
    ld->K = hl->K;
    ld->scale = hl->scale;
    ld->lora_scale = n->lora_scale * (hl->lora_mul != 0.0f ? hl->lora_mul : 1.0f);
    ld->shadow = ld->pa = ld->pb = -1;
    if (n->o.act_quant == QV_ACTQ_LLAMACPP) {
        /* the vec_dot_type of llama.cpp's CPU matmul for this weight type */
        uint32_t ft = hl->file_type;
        ld->round = ft == QV_GGML_TQ2_0 || ft == QV_GGML_TQ1_0 ? 3
                    : ft == QV_GGML_F16                      ? 1
                    : ft == QV_GGML_BF16                     ? 2
                    : ft == QV_GGML_F32                      ? 0
                                                             : -1;
        if (ld->round < 0)
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "train: blk.%d.%s is stored as %s, which llama.cpp "
                           "does not run: --act-quant llamacpp has nothing to "
                           "reproduce; use --act-quant bitnet", l, gguf_lin[i],
                           qv_ggml_type_name(ft) ? qv_ggml_type_name(ft) : "?");
        if (hl->requantised)
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "train: blk.%d.%s holds float weights that are not "
                           "ternary (qvac quantised them at load; llama.cpp "
                           "multiplies them as they are): --act-quant llamacpp "
                           "cannot reproduce llama.cpp here", l, gguf_lin[i]);
        if (ld->round == 3 && hl->K % 256)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "train: blk.%d.%s has rows of %d, not a multiple of "
                           "256 as %s needs", l, gguf_lin[i], hl->K,
                           qv_ggml_type_name(hl->file_type));
    }
    size_t NK = (size_t)hl->N * (size_t)hl->K;
    qv_status s = QV_OK;
    /* llamacpp: the weight as the file holds it; its scale tensor multiplies
     * the product (folded into one half it would be rounded) */
    float wscale = hl->scale;
    if (n->o.act_quant == QV_ACTQ_LLAMACPP && hl->ext_scale > 0.0f) {
        wscale = hl->scale / hl->ext_scale;
        ld->ext = hl->ext_scale;
    }
    int8_t *q = NULL; /* codes one a byte, for the f32 / f16 copies */
    if (n->o.weights != QV_WEIGHTS_TERNARY || n->o.ste_surrogate) {
        q = malloc(NK);
        if (!q)
            return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        if ((s = qv_ternary_unpack(hl->packed, hl->N, hl->K, q, err))) {
            free(q);
            return s;
        }
    }
    if (n->o.weights == QV_WEIGHTS_TERNARY) {
        size_t bytes = qv_ternary_bytes(hl->N, hl->K);
        s = buf(n, QV_MEM_WEIGHTS, bytes, &ld->packed, err);
        if (!s)
            s = qv_buffer_write(ld->packed, 0, hl->packed, bytes, err);
        if (!s && n->o.ste_surrogate) {
            float *w = malloc(NK * 4);
            if (!w) {
                free(q);
                return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
            }
            for (size_t j = 0; j < NK; j++)
                w[j] = (float)q[j] * hl->scale;
            s = buf(n, QV_MEM_WEIGHTS, NK * 4, &ld->w32, err);
            if (!s)
                s = qv_buffer_write(ld->w32, 0, w, NK * 4, err);
            free(w);
        }
    } else if (n->o.act_quant == QV_ACTQ_LLAMACPP && hl->file_type == QV_GGML_F32) {
        /* llama.cpp multiplies an F32 weight in f32: its q * scale may not
         * be a half */
        float *w = malloc(NK * 4);
        if (!w) {
            free(q);
            return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        }
        for (size_t j = 0; j < NK; j++)
            w[j] = (float)q[j] * wscale;
        s = buf(n, QV_MEM_WEIGHTS, NK * 4, &ld->w32, err);
        if (!s)
            s = qv_buffer_write(ld->w32, 0, w, NK * 4, err);
        free(w);
    } else {
        uint16_t *h = malloc(NK * 2);
        if (!h) {
            free(q);
            return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        }
        for (size_t j = 0; j < NK; j++)
            h[j] = qv_f32_to_f16((float)q[j] * wscale);
        s = buf(n, QV_MEM_WEIGHTS, NK * 2, &ld->w16, err);
        if (!s)
            s = qv_buffer_write(ld->w16, 0, h, NK * 2, err);
        free(h);
    }
    free(q);
    if (s)
        return s;
    char name[64];
    if (n->o.full) {
        if (!hl->w)
            return qv_fail(err, QV_ERR_INVALID,
                           "train: full training needs the shadow weights "
                           "(a model from qv_model_init_random)");
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, gguf_lin[i]);
        s = add_param(n, name, l, i, hl->N, hl->K, hl->w, 1, QV_MEM_WEIGHTS,
                      &ld->shadow, err);
        if (s)
            return s;
    }
    if (n->r > 0 && (n->o.targets & (1u << i))) {
        /* A ~ N(0, 1/K) (so H has unit scale), B ~ N(0, b_std^2) (0: zeros) */
        qv_rng rng = {n->o.seed * 1000003u + (uint64_t)l * 31u + (uint64_t)i};
        size_t na = (size_t)n->r * (size_t)hl->K, nb = (size_t)hl->N * (size_t)n->r;
        float *a = malloc(na * 4), *b = malloc(nb * 4);
        if (!a || !b) {
            free(a);
            free(b);
            return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        }
        float sa = 1.0f / sqrtf((float)hl->K);
        for (size_t j = 0; j < na; j++)
            a[j] = sa * qv_rng_uniform(&rng, -1.7320508f, 1.7320508f);
        for (size_t j = 0; j < nb; j++)
            b[j] = n->o.lora_b_std * qv_rng_uniform(&rng, -1.7320508f, 1.7320508f);
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, gguf_lin[i]);
        s = add_param(n, name, l, i, n->r, hl->K, a, 0, QV_MEM_ADAPTER,
                      &ld->pa, err);
        if (!s) {
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, gguf_lin[i]);
            s = add_param(n, name, l, i, hl->N, n->r, b, 0, QV_MEM_ADAPTER,
                          &ld->pb, err);
        }
        free(a);
        free(b);
        if (!s && n->o.checkpoint && l > 0)
            ld->H = n->L[0].lin[i].H; /* one layer's activations, shared */
        else if (!s)
            s = buf(n, QV_MEM_ACTIVATIONS, (size_t)n->T * (size_t)n->r * 4,
                    &ld->H, err);
    }
    return s;
}

/* ---- construction ------------------------------------------------------- */

qv_status qv_net_new(qv_device *dev, const qv_model *m, const qv_net_opts *o,
                     qv_net **out, qv_err *err)
{
    *out = NULL;
    qv_status s = qv_model_config_check(&m->cfg, err);
    if (s)
        return s;
    if (o->batch < 1 || o->seq < 1 || (int64_t)o->batch * o->seq > (1 << 20))
        return qv_fail(err, QV_ERR_INVALID,
                       "train: batch %d x sequence %d is out of range",
                       o->batch, o->seq);
    if (o->rank < 0 || o->rank > 128)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: LoRA rank %d is out of range (1..128)", o->rank);
    if (o->full && o->weights != QV_WEIGHTS_TERNARY)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: full (quantisation-aware) training runs with "
                       "ternary weights only");
    qv_net *n = calloc(1, sizeof *n);
    if (!n)
        return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
    n->dev = dev;
    n->cfg = m->cfg;
    n->o = *o;
    if (o->act_quant == QV_ACTQ_LLAMACPP) {
        if (o->full || o->weights != QV_WEIGHTS_TERNARY || o->ste_surrogate) {
            free(n);
            return qv_fail(err, QV_ERR_INVALID,
                           "train: --act-quant llamacpp is a forward mode of the "
                           "ternary model (eval, generate), not for training");
        }
        uint32_t ht = m->head_file_type;
        n->head_round = ht == QV_GGML_F32    ? 0
                        : ht == QV_GGML_F16  ? 1
                        : ht == QV_GGML_BF16 ? 2
                        : ht == QV_GGML_Q6_K && m->cfg.dim % 256 == 0 ? 3
                                             : -1;
        if (n->head_round < 0) {
            free(n);
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "train: the output head is stored as %s; qvac does "
                           "not reproduce llama.cpp's matmul for it: use "
                           "--act-quant bitnet",
                           qv_ggml_type_name(ht) ? qv_ggml_type_name(ht) : "?");
        }
        n->o.weights = QV_WEIGHTS_F16; /* q * scale, exact in 16 bits */
    }
    n->T = o->batch * o->seq;
    n->D = m->cfg.dim;
    n->F = m->cfg.ffn_dim;
    n->V = m->cfg.vocab;
    n->Hq = m->cfg.n_heads;
    n->Hkv = m->cfg.n_kv_heads;
    n->hd = m->cfg.dim / m->cfg.n_heads;
    n->kvd = n->Hkv * n->hd;
    n->r = o->rank > 0 && o->targets ? o->rank : 0;
    n->lora_scale = n->r ? o->alpha / (float)n->r : 0.0f;
    n->p_emb = n->p_out_norm = n->p_head = -1;
    int32_t T = n->T, D = n->D, F = n->F, V = n->V;
    size_t fT = (size_t)T * 4;

    n->L = calloc((size_t)m->cfg.n_layers, sizeof *n->L);
    n->x = calloc((size_t)m->cfg.n_layers + 1, sizeof *n->x);
    if (!n->L || !n->x) {
        qv_net_free(&n);
        return qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
    }
    /* embedding, final norm, head */
    size_t VD = (size_t)V * (size_t)D;
    n->emb16 = !o->full && f16_exact(m->tok_emb, VD) &&
               (m->cfg.tied || f16_exact(m->head, VD));
    uint64_t maxa = dev->info.max_alloc_bytes;
    size_t row_bytes = (size_t)D * (n->emb16 ? 2 : 4);
    if (!o->full && ((maxa && VD * (n->emb16 ? 2 : 4) > maxa) || o->vocab_block_rows > 0)) {
        uint64_t rows = maxa ? maxa / row_bytes : (uint64_t)V;
        if (o->vocab_block_rows > 0 && (uint64_t)o->vocab_block_rows < rows)
            rows = (uint64_t)o->vocab_block_rows;
        if ((s = upload_vocab_blocks(n, m, rows, err)))
            goto fail;
    } else if (n->emb16) {
        if ((s = upload_f16(n, m->tok_emb, (size_t)V * (size_t)D, &n->tok_emb, err)) ||
            (!m->cfg.tied &&
             (s = upload_f16(n, m->head, (size_t)V * (size_t)D, &n->head, err))))
            goto fail;
    } else if ((s = add_f32(n, "token_embd.weight", -1, V, D, m->tok_emb,
                            &n->p_emb, &n->tok_emb, err)) ||
               (!m->cfg.tied &&
                (s = add_f32(n, "output.weight", -1, V, D, m->head, &n->p_head,
                             &n->head, err))))
        goto fail;
    if (m->cfg.tied)
        n->head = n->tok_emb;
    if (n->n_vb &&
        (s = buf(n, QV_MEM_ACTIVATIONS, fT * (size_t)n->vb_rows, &n->vb_logits, err)))
        goto fail;
    if ((s = add_f32(n, "output_norm.weight", -1, 1, D, m->out_norm,
                     &n->p_out_norm, &n->out_norm, err)))
        goto fail;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_dev *L = &n->L[l];
        const qv_layer *hl = &m->layers[l];
        char name[64];
        L->attn_sub = L->ffn_sub = -1;
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((s = add_f32(n, name, l, 1, D, hl->attn_norm, &L->attn_norm,
                         &L->attn_norm_b, err)))
            goto fail;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((s = add_f32(n, name, l, 1, D, hl->ffn_norm, &L->ffn_norm,
                         &L->ffn_norm_b, err)))
            goto fail;
        if (m->cfg.sub_norm) {
            snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
            if ((s = add_f32(n, name, l, 1, D, hl->attn_sub_norm, &L->attn_sub,
                             &L->attn_sub_b, err)))
                goto fail;
            snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
            if ((s = add_f32(n, name, l, 1, F, hl->ffn_sub_norm, &L->ffn_sub,
                             &L->ffn_sub_b, err)))
                goto fail;
        }
        for (int i = 0; i < QV_LIN_COUNT; i++)
            if ((s = upload_linear(n, l, i, &hl->lin[i], err)))
                goto fail;
        /* activations kept for the backward pass (with checkpointing, one
         * layer's, shared by all) */
        size_t TD = fT * (size_t)D, TF = fT * (size_t)F, TK = fT * (size_t)n->kvd;
        if (o->checkpoint && l > 0) {
            const layer_dev *L0 = &n->L[0];
            L->xn1 = L0->xn1; L->q = L0->q; L->k = L0->k; L->v = L0->v;
            L->att = L0->att; L->att_n = L0->att_n; L->x_mid = L0->x_mid;
            L->xn2 = L0->xn2; L->g = L0->g; L->u = L0->u; L->h = L0->h;
            L->h_n = L0->h_n;
            continue;
        }
        if ((s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->xn1, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->q, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TK, &L->k, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TK, &L->v, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->att, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->x_mid, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->xn2, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TF, &L->g, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TF, &L->u, err)) ||
            (s = buf(n, QV_MEM_ACTIVATIONS, TF, &L->h, err)))
            goto fail;
        if (m->cfg.sub_norm &&
            ((s = buf(n, QV_MEM_ACTIVATIONS, TD, &L->att_n, err)) ||
             (s = buf(n, QV_MEM_ACTIVATIONS, TF, &L->h_n, err))))
            goto fail;
    }
    for (int l = 0; l <= m->cfg.n_layers; l++)
        if ((s = buf(n, QV_MEM_ACTIVATIONS, fT * (size_t)D, &n->x[l], err)))
            goto fail;
    int32_t maxDF = D > F ? D : F;
    if (o->act_quant == QV_ACTQ_LLAMACPP &&
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)maxDF, &n->xr, err)))
        goto fail;
    if ((s = buf(n, QV_MEM_ACTIVATIONS, fT * (size_t)D, &n->xf, err)) ||
        (s = buf(n, QV_MEM_ACTIVATIONS, fT * (size_t)V, &n->logits, err)) ||
        (o->keep_logits &&
         (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)V, &n->dlogits, err))) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT, &n->loss, err)) ||
        (s = buf(n, QV_MEM_ACTIVATIONS, fT, &n->ids, err)) ||
        (s = buf(n, QV_MEM_ACTIVATIONS, fT, &n->tgt, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, (size_t)o->seq * (size_t)n->hd * 4, &n->cs, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT, &n->xs, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)D, &n->wsD[0], err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)D, &n->wsD[1], err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)F, &n->wsF[0], err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)F, &n->wsF[1], err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)F, &n->wsF[2], err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)D, &n->dq, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)n->kvd, &n->dk, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)n->kvd, &n->dv, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)n->Hq, &n->attL, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)n->Hq, &n->attD, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, fT, &n->rstd, err)) ||
        (s = buf(n, QV_MEM_WORKSPACE, (size_t)maxDF * 4, &n->dgj, err)))
        goto fail;
    if (!o->keep_logits)
        n->dlogits = n->logits; /* the gradient overwrites the logits */
    if (o->weights == QV_WEIGHTS_TERNARY &&
        (s = buf(n, QV_MEM_WORKSPACE, (size_t)T * (size_t)maxDF, &n->xq, err)))
        goto fail;
    if (n->r &&
        ((s = buf(n, QV_MEM_WORKSPACE, fT * (size_t)n->r, &n->dH, err)) ||
         (s = buf(n, QV_MEM_WORKSPACE, (size_t)n->r * (size_t)maxDF * 4, &n->dA, err)) ||
         (s = buf(n, QV_MEM_WORKSPACE, (size_t)n->r * (size_t)maxDF * 4, &n->dB, err))))
        goto fail;
    /* partial sums for norms: enough for the largest parameter */
    int32_t maxp = 1;
    for (int i = 0; i < n->n_params; i++)
        if (n->params[i].n > maxp)
            maxp = n->params[i].n;
    n->red_n = ((size_t)maxp + 1023) / 1024;
    if ((s = buf(n, QV_MEM_WORKSPACE, n->red_n * 4, &n->red, err)))
        goto fail;
    n->red_host = malloc(n->red_n * 4);
    n->loss_host = malloc(fT);
    if (!n->red_host || !n->loss_host) {
        s = qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
        goto fail;
    }
    /* RoPE table: cs[p, i] = (cos, sin)(p * fs * theta^(-2i/hd)), in double
     * (fs: the linear scaling's 1 / factor; ggml_rope_ext's freq_scale) */
    {
        size_t half = (size_t)n->hd / 2, cnt = (size_t)o->seq * half * 2;
        float *cs = malloc(cnt * 4);
        if (!cs) {
            s = qv_fail(err, QV_ERR_NOMEM, "train: out of host memory");
            goto fail;
        }
        for (int p = 0; p < o->seq; p++)
            for (size_t i = 0; i < half; i++) {
                double f = pow((double)m->cfg.rope_theta,
                               -2.0 * (double)i / (double)n->hd);
                double fs = m->cfg.rope_freq_scale > 0.0f
                                ? (double)m->cfg.rope_freq_scale : 1.0;
                cs[((size_t)p * half + i) * 2] = (float)cos(p * fs * f);
                cs[((size_t)p * half + i) * 2 + 1] = (float)sin(p * fs * f);
            }
        s = qv_buffer_write(n->cs, 0, cs, cnt * 4, err);
        free(cs);
        if (s)
            goto fail;
    }
    *out = n;
    return QV_OK;
fail:
    qv_net_free(&n);
    return s;
}

void qv_net_free(qv_net **pn)
{
    if (!pn || !*pn)
        return;
    qv_net *n = *pn;
    if (g_prof[0].name)
        prof_print();
    for (int i = 0; i < n->n_params; i++) {
        qv_buffer_destroy(&n->params[i].p);
        qv_buffer_destroy(&n->params[i].g);
        qv_buffer_destroy(&n->params[i].m1);
        qv_buffer_destroy(&n->params[i].m2);
    }
    free(n->params);
    free(n->red_host);
    free(n->loss_host);
    for (int b = 0; b < n->n_vb; b++) {
        if (n->emb_b)
            qv_buffer_destroy(&n->emb_b[b]);
        if (n->head_b && n->head_b != n->emb_b)
            qv_buffer_destroy(&n->head_b[b]);
        if (n->ids_b)
            qv_buffer_destroy(&n->ids_b[b]);
    }
    if (n->head_b != n->emb_b)
        free(n->head_b);
    free(n->emb_b);
    free(n->ids_b);
    free(n->ids_host);
    qv_buffer_destroy(&n->vb_logits);
    if (n->p_emb < 0)
        qv_buffer_destroy(&n->tok_emb);
    if (n->p_out_norm < 0)
        qv_buffer_destroy(&n->out_norm);
    if (!n->cfg.tied && n->p_head < 0)
        qv_buffer_destroy(&n->head);
    if (n->L)
        for (int l = 0; l < n->cfg.n_layers; l++) {
            layer_dev *L = &n->L[l];
            if (L->attn_norm < 0) qv_buffer_destroy(&L->attn_norm_b);
            if (L->ffn_norm < 0) qv_buffer_destroy(&L->ffn_norm_b);
            if (L->attn_sub < 0) qv_buffer_destroy(&L->attn_sub_b);
            if (L->ffn_sub < 0) qv_buffer_destroy(&L->ffn_sub_b);
            int shared = n->o.checkpoint && l > 0; /* layer 0's */
            for (int i = 0; i < QV_LIN_COUNT; i++) {
                qv_buffer_destroy(&L->lin[i].packed);
                qv_buffer_destroy(&L->lin[i].w16);
                qv_buffer_destroy(&L->lin[i].w32);
                if (!shared)
                    qv_buffer_destroy(&L->lin[i].H);
            }
            if (shared)
                continue;
            qv_buffer *acts[] = {L->xn1, L->q,     L->k,   L->v,
                                 L->att, L->att_n, L->x_mid, L->xn2,
                                 L->g,   L->u,     L->h,   L->h_n};
            for (size_t j = 0; j < sizeof acts / sizeof acts[0]; j++)
                qv_buffer_destroy(&acts[j]);
        }
    free(n->L);
    if (n->x)
        for (int l = 0; l <= n->cfg.n_layers; l++)
            qv_buffer_destroy(&n->x[l]);
    free(n->x);
    if (n->dlogits == n->logits)
        n->dlogits = NULL; /* in place (keep_logits 0) */
    qv_buffer *ws[] = {n->xf,  n->logits, n->dlogits, n->loss,   n->ids,
                       n->tgt, n->cs,     n->xq,      n->xs,     n->wsD[0],
                       n->wsD[1], n->wsF[0], n->wsF[1], n->wsF[2], n->dq,
                       n->dk,  n->dv,     n->attL,    n->attD,   n->rstd,
                       n->dgj, n->dH,     n->dA,      n->dB,     n->red, n->xr};
    for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++)
        qv_buffer_destroy(&ws[j]);
    free(n);
    *pn = NULL;
}

/* ---- the linear layers --------------------------------------------------- */

/* Quantises X (T, K) to int8 per token: the BitLinear input. */
static qv_status quantize_input(qv_net *n, qv_buffer *X, int32_t K, qv_err *err)
{
    n->xr_src = NULL; /* X holds new values */
    if (n->o.weights != QV_WEIGHTS_TERNARY || n->o.ste_surrogate)
        return QV_OK;
    LAUNCH("quantize_act", SH(n->T, 0, K, 0), B_(X), B_(n->xq), B_(n->xs),
           I_(n->T), I_(K));
    return QV_OK;
}

/* Y (T, N) = BitLinear(X) [+ LoRA]; X already went through quantize_input. */
static qv_status lin_fwd(qv_net *n, int l, int i, qv_buffer *X, qv_buffer *Y,
                         qv_err *err)
{
    lin_dev *ld = &n->L[l].lin[i];
    int32_t T = n->T, N = ld->N, K = ld->K;
    qv_buffer *Xw = X; /* what the weight sees */
    if (n->o.act_quant == QV_ACTQ_LLAMACPP && ld->round) {
        if (n->xr_src != X || n->xr_mode != ld->round) {
            qv_status s = axpby(n, X, n->xr, T * K, 1.0f, 0.0f, err);
            if (s)
                return s;
            LAUNCH("act_round", S0, B_(n->xr), I_(T), I_(K), I_(ld->round));
            n->xr_src = X;
            n->xr_mode = ld->round;
        }
        Xw = n->xr;
    }
    if (ld->w32) /* Y (T, N) = X (T, K) . W (N, K)^T */
        LAUNCH("f32_matmul", SH(T, N, K, 0), B_(Xw), B_(ld->w32), B_(Y), I_(T),
               I_(N), I_(K), I_(0), I_(1), I_(0));
    else if (n->o.weights == QV_WEIGHTS_TERNARY)
        LAUNCH("ternary_matmul", SH(T, N, K, 0), B_(n->xq), B_(n->xs),
               B_(ld->packed), B_(Y), I_(T), I_(N), I_(K), F_(ld->scale));
    else
        LAUNCH("f16_matmul", SH(T, N, K, 0), B_(Xw), B_(ld->w16), B_(Y), I_(T),
               I_(N), I_(K));
    if (ld->ext > 0.0f) { /* llama.cpp: ggml_mul(product, scale), then LoRA */
        qv_status s = axpby(n, Y, Y, T * N, ld->ext, 0.0f, err);
        if (s)
            return s;
    }
    if (ld->pa >= 0)
        LAUNCH("lora_fwd", SH(T, N, K, n->r), B_(X), B_(n->params[ld->pa].p),
               B_(n->params[ld->pb].p), B_(ld->H), B_(Y), I_(T), I_(N), I_(K),
               I_(n->r), F_(ld->lora_scale));
    return QV_OK;
}

/* Given dY (T, N) of linear i with input X (T, K): dX = dY . W (written, or
 * added when accumulate), adapter gradients added, shadow weight gradient
 * added (full training). Straight-through estimator: the int8 input
 * quantisation and the ternary weight quantisation pass gradients as if
 * they were the identity. */
static qv_status lin_bwd(qv_net *n, int l, int i, qv_buffer *X, qv_buffer *dY,
                         qv_buffer *dX, int accumulate, qv_buffer *tmp,
                         qv_err *err)
{
    lin_dev *ld = &n->L[l].lin[i];
    int32_t T = n->T, N = ld->N, K = ld->K;
    qv_buffer *dst = accumulate ? tmp : dX;
    if (n->o.weights == QV_WEIGHTS_TERNARY)
        LAUNCH("ternary_matmul_t", SH(T, N, K, 0), B_(dY), B_(ld->packed),
               B_(dst), I_(T), I_(N), I_(K), F_(ld->scale));
    else
        LAUNCH("f16_matmul_t", SH(T, N, K, 0), B_(dY), B_(ld->w16), B_(dst),
               I_(T), I_(N), I_(K));
    if (ld->pa >= 0) {
        param *A = &n->params[ld->pa], *B = &n->params[ld->pb];
        LAUNCH("lora_bwd", SH(T, N, K, n->r), B_(X), B_(A->p), B_(B->p),
               B_(ld->H), B_(dY), B_(n->dH), B_(n->dA), B_(n->dB), B_(dst),
               I_(T), I_(N), I_(K), I_(n->r), F_(ld->lora_scale));
        qv_status s;
        if ((s = axpby(n, n->dA, A->g, A->n, 1.0f, 1.0f, err)) ||
            (s = axpby(n, n->dB, B->g, B->n, 1.0f, 1.0f, err)))
            return s;
    }
    if (ld->shadow >= 0) /* dW (N, K) += dY^T (N, T) . X (T, K) */
        LAUNCH("f32_matmul", SH(N, K, T, 0), B_(dY), B_(X),
               B_(n->params[ld->shadow].g), I_(N), I_(K), I_(T), I_(1), I_(0),
               I_(1));
    if (accumulate)
        return axpby(n, tmp, dX, T * K, 1.0f, 1.0f, err);
    return QV_OK;
}

/* ---- forward / backward ------------------------------------------------- */

static qv_status layer_fwd(qv_net *n, int l, qv_err *err)
{
    layer_dev *L = &n->L[l];
    qv_buffer *x = n->x[l], *y = n->x[l + 1];
    int32_t T = n->T, D = n->D, F = n->F;
    qv_status s;
    /* attention */
    if ((s = rmsnorm(n, x, L->attn_norm_b, L->xn1, D, err)) ||
        (s = quantize_input(n, L->xn1, D, err)) ||
        (s = lin_fwd(n, l, QV_LIN_Q, L->xn1, L->q, err)) ||
        (s = lin_fwd(n, l, QV_LIN_K, L->xn1, L->k, err)) ||
        (s = lin_fwd(n, l, QV_LIN_V, L->xn1, L->v, err)))
        return s;
    LAUNCH("rope", S0, B_(L->q), B_(n->cs), I_(T), I_(n->Hq), I_(n->hd),
           I_(n->o.seq), I_(1), I_(n->cfg.rope_neox));
    LAUNCH("rope", S0, B_(L->k), B_(n->cs), I_(T), I_(n->Hkv), I_(n->hd),
           I_(n->o.seq), I_(1), I_(n->cfg.rope_neox));
    LAUNCH("attention", S0, B_(L->q), B_(L->k), B_(L->v), B_(L->att),
           I_(n->o.batch), I_(n->o.seq), I_(n->Hq), I_(n->Hkv), I_(n->hd),
           F_(1.0f / sqrtf((float)n->hd)));
    qv_buffer *o_in = L->att;
    if (L->att_n) {
        if ((s = rmsnorm(n, L->att, L->attn_sub_b, L->att_n, D, err)))
            return s;
        o_in = L->att_n;
    }
    if ((s = quantize_input(n, o_in, D, err)) ||
        (s = lin_fwd(n, l, QV_LIN_O, o_in, n->wsD[0], err)) ||
        (s = axpby(n, x, L->x_mid, T * D, 1.0f, 0.0f, err)) ||
        (s = axpby(n, n->wsD[0], L->x_mid, T * D, 1.0f, 1.0f, err)))
        return s;
    /* MLP */
    if ((s = rmsnorm(n, L->x_mid, L->ffn_norm_b, L->xn2, D, err)) ||
        (s = quantize_input(n, L->xn2, D, err)) ||
        (s = lin_fwd(n, l, QV_LIN_GATE, L->xn2, L->g, err)) ||
        (s = lin_fwd(n, l, QV_LIN_UP, L->xn2, L->u, err)))
        return s;
    LAUNCH("swiglu", S0, B_(L->g), B_(L->u), B_(L->h), I_(T * F),
           I_(n->cfg.act));
    qv_buffer *d_in = L->h;
    if (L->h_n) {
        if ((s = rmsnorm(n, L->h, L->ffn_sub_b, L->h_n, F, err)))
            return s;
        d_in = L->h_n;
    }
    if ((s = quantize_input(n, d_in, F, err)) ||
        (s = lin_fwd(n, l, QV_LIN_DOWN, d_in, n->wsD[0], err)) ||
        (s = axpby(n, L->x_mid, y, T * D, 1.0f, 0.0f, err)) ||
        (s = axpby(n, n->wsD[0], y, T * D, 1.0f, 1.0f, err)))
        return s;
    return QV_OK;
}

/* dx holds d loss / d x[l+1] on entry and d loss / d x[l] on return. */
static qv_status layer_bwd(qv_net *n, int l, qv_buffer *dx, qv_err *err)
{
    layer_dev *L = &n->L[l];
    int32_t T = n->T, D = n->D, F = n->F;
    qv_status s;
    qv_buffer *wa = n->wsF[0], *wb = n->wsF[1], *wc = n->wsF[2];
    /* MLP: y = x_mid + down(sub(swiglu(gate(xn2), up(xn2)))) */
    qv_buffer *d_in = L->h_n ? L->h_n : L->h;
    if ((s = lin_bwd(n, l, QV_LIN_DOWN, d_in, dx, wa, 0, NULL, err)))
        return s;
    qv_buffer *dh = wa, *du = wb;
    if (L->h_n) {
        if ((s = fill(n, wb, T * F, 0.0f, err)) ||
            (s = rmsnorm_bwd(n, L->h, L->ffn_sub_b, L->ffn_sub, wa, wb, F, err)))
            return s;
        dh = wb;
        du = wa;
    }
    LAUNCH("swiglu_bwd", S0, B_(L->g), B_(L->u), B_(dh), B_(wc), B_(du),
           I_(T * F), I_(n->cfg.act));
    if ((s = lin_bwd(n, l, QV_LIN_GATE, L->xn2, wc, n->wsD[0], 0, NULL, err)) ||
        (s = lin_bwd(n, l, QV_LIN_UP, L->xn2, du, n->wsD[0], 1, n->wsD[1], err)) ||
        (s = rmsnorm_bwd(n, L->x_mid, L->ffn_norm_b, L->ffn_norm, n->wsD[0], dx,
                         D, err)))
        return s;
    /* attention: x_mid = x + o(sub(attn(rope(q(xn1)), rope(k(xn1)), v(xn1)))) */
    qv_buffer *o_in = L->att_n ? L->att_n : L->att;
    if ((s = lin_bwd(n, l, QV_LIN_O, o_in, dx, n->wsD[0], 0, NULL, err)))
        return s;
    qv_buffer *datt = n->wsD[0];
    if (L->att_n) {
        if ((s = fill(n, n->wsD[1], T * D, 0.0f, err)) ||
            (s = rmsnorm_bwd(n, L->att, L->attn_sub_b, L->attn_sub, n->wsD[0],
                             n->wsD[1], D, err)))
            return s;
        datt = n->wsD[1];
    }
    LAUNCH("attention_bwd", S0, B_(L->q), B_(L->k), B_(L->v), B_(datt),
           B_(n->attL), B_(n->attD), B_(n->dq), B_(n->dk), B_(n->dv),
           I_(n->o.batch), I_(n->o.seq), I_(n->Hq), I_(n->Hkv), I_(n->hd),
           F_(1.0f / sqrtf((float)n->hd)));
    LAUNCH("rope", S0, B_(n->dq), B_(n->cs), I_(T), I_(n->Hq), I_(n->hd),
           I_(n->o.seq), I_(-1), I_(n->cfg.rope_neox));
    LAUNCH("rope", S0, B_(n->dk), B_(n->cs), I_(T), I_(n->Hkv), I_(n->hd),
           I_(n->o.seq), I_(-1), I_(n->cfg.rope_neox));
    /* datt is free now: wsD[0] or wsD[1] is the sum, the other the tmp */
    qv_buffer *sum = n->wsD[0], *tmp = n->wsD[1];
    if ((s = lin_bwd(n, l, QV_LIN_Q, L->xn1, n->dq, sum, 0, NULL, err)) ||
        (s = lin_bwd(n, l, QV_LIN_K, L->xn1, n->dk, sum, 1, tmp, err)) ||
        (s = lin_bwd(n, l, QV_LIN_V, L->xn1, n->dv, sum, 1, tmp, err)) ||
        (s = rmsnorm_bwd(n, n->x[l], L->attn_norm_b, L->attn_norm, sum, dx, D,
                         err)))
        return s;
    return QV_OK;
}

qv_status qv_net_run(qv_net *n, const int32_t *tokens, const int32_t *targets,
                     int backward, float gscale, double *loss_sum,
                     int64_t *count, qv_err *err)
{
    int32_t T = n->T, D = n->D, V = n->V;
    int nl = n->cfg.n_layers;
    qv_status s;
    if (backward && !targets)
        return qv_fail(err, QV_ERR_INVALID, "train: backward needs targets");
    if (backward && n->o.act_quant == QV_ACTQ_LLAMACPP)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: --act-quant llamacpp has no backward pass");
    if ((s = qv_buffer_write(n->ids, 0, tokens, (size_t)T * 4, err)))
        return s;
    if (!n->n_vb) {
        LAUNCH(n->emb16 ? "embed_f16" : "embed", S0, B_(n->ids), B_(n->tok_emb),
               B_(n->x[0]), I_(T), I_(D), I_(V));
    } else { /* each block gathers its own rows (zero for the others) */
        for (int b = 0; b < n->n_vb; b++) {
            int32_t r0 = b * n->vb_rows;
            int32_t rows = V - r0 < n->vb_rows ? V - r0 : n->vb_rows;
            for (int32_t t = 0; t < T; t++)
                n->ids_host[t] = tokens[t] - r0;
            if ((s = qv_buffer_write(n->ids_b[b], 0, n->ids_host, (size_t)T * 4, err)))
                return s;
            LAUNCH(n->emb16 ? "embed_f16" : "embed", S0, B_(n->ids_b[b]),
                   B_(n->emb_b[b]), B_(b ? n->wsD[0] : n->x[0]), I_(T), I_(D),
                   I_(rows));
            if (b && (s = axpby(n, n->wsD[0], n->x[0], T * D, 1.0f, 1.0f, err)))
                return s;
        }
    }
    for (int l = 0; l < nl; l++)
        if ((s = layer_fwd(n, l, err)))
            return s;
    if ((s = rmsnorm(n, n->x[nl], n->out_norm, n->xf, D, err)))
        return s;
    if (n->o.act_quant == QV_ACTQ_LLAMACPP && n->head_round)
        LAUNCH("act_round", S0, B_(n->xf), I_(T), I_(D), I_(n->head_round));
    /* logits (T, V) = xf (T, D) . head (V, D)^T */
    for (int b = 0; b < n->n_vb; b++) { /* block b's columns */
        int32_t r0 = b * n->vb_rows;
        int32_t rows = V - r0 < n->vb_rows ? V - r0 : n->vb_rows;
        if (n->emb16)
            LAUNCH("f16_matmul", SH(T, rows, D, 0), B_(n->xf), B_(n->head_b[b]),
                   B_(n->vb_logits), I_(T), I_(rows), I_(D));
        else
            LAUNCH("f32_matmul", SH(T, rows, D, 0), B_(n->xf), B_(n->head_b[b]),
                   B_(n->vb_logits), I_(T), I_(rows), I_(D), I_(0), I_(1), I_(0));
        LAUNCH("cols_copy", S0, B_(n->vb_logits), B_(n->logits), I_(T), I_(rows),
               I_(V), I_(r0), I_(0));
    }
    if (!n->n_vb && n->emb16)
        LAUNCH("f16_matmul", SH(T, V, D, 0), B_(n->xf), B_(n->head),
               B_(n->logits), I_(T), I_(V), I_(D));
    else if (!n->n_vb)
        LAUNCH("f32_matmul", SH(T, V, D, 0), B_(n->xf), B_(n->head),
               B_(n->logits), I_(T), I_(V), I_(D), I_(0), I_(1), I_(0));
    n->have_logits = 1;
    if (!targets)
        return qv_device_sync(n->dev, err);
    if ((s = qv_buffer_write(n->tgt, 0, targets, (size_t)T * 4, err)))
        return s;
    LAUNCH("cross_entropy", S0, B_(n->logits), B_(n->tgt), B_(n->loss),
           B_(n->dlogits), I_(T), I_(V), F_(gscale));
    if (n->dlogits == n->logits)
        n->have_logits = 0; /* overwritten by their gradient */
    if (backward) {
        qv_buffer *dx = n->wsD[0];
        /* dxf (T, D) = dlogits (T, V) . head (V, D) */
        for (int b = 0; b < n->n_vb; b++) { /* summed over the blocks */
            int32_t r0 = b * n->vb_rows;
            int32_t rows = V - r0 < n->vb_rows ? V - r0 : n->vb_rows;
            LAUNCH("cols_copy", S0, B_(n->vb_logits), B_(n->dlogits), I_(T),
                   I_(rows), I_(V), I_(r0), I_(1));
            if (n->emb16)
                LAUNCH("f16_matmul_t", SH(T, rows, D, 0), B_(n->vb_logits),
                       B_(n->head_b[b]), B_(b ? n->wsD[1] : dx), I_(T), I_(rows),
                       I_(D));
            else
                LAUNCH("f32_matmul", SH(T, D, rows, 0), B_(n->vb_logits),
                       B_(n->head_b[b]), B_(b ? n->wsD[1] : dx), I_(T), I_(D),
                       I_(rows), I_(0), I_(0), I_(0));
            if (b && (s = axpby(n, n->wsD[1], dx, T * D, 1.0f, 1.0f, err)))
                return s;
        }
        if (!n->n_vb && n->emb16)
            LAUNCH("f16_matmul_t", SH(T, V, D, 0), B_(n->dlogits),
                   B_(n->head), B_(dx), I_(T), I_(V), I_(D));
        else if (!n->n_vb)
            LAUNCH("f32_matmul", SH(T, D, V, 0), B_(n->dlogits), B_(n->head),
                   B_(dx), I_(T), I_(D), I_(V), I_(0), I_(0), I_(0));
        int ph = n->cfg.tied ? n->p_emb : n->p_head;
        if (ph >= 0) /* dhead (V, D) += dlogits^T (V, T) . xf (T, D) */
            LAUNCH("f32_matmul", SH(V, D, T, 0), B_(n->dlogits), B_(n->xf),
                   B_(n->params[ph].g), I_(V), I_(D), I_(T), I_(1), I_(0),
                   I_(1));
        /* the residual stream's gradient needs a buffer of its own (layer_bwd
         * uses wsD as scratch): xf, whose last reader was dhead above */
        qv_buffer *dstream = n->xf;
        if ((s = fill(n, dstream, T * D, 0.0f, err)) ||
            (s = rmsnorm_bwd(n, n->x[nl], n->out_norm, n->p_out_norm, dx,
                             dstream, D, err)))
            return s;
        for (int l = nl - 1; l >= 0; l--) {
            /* checkpointing: the shared activations hold the last layer's;
             * every other layer's forward runs again from its input (it
             * rewrites x[l+1] with the same values) */
            if (n->o.checkpoint && l < nl - 1 && (s = layer_fwd(n, l, err)))
                return s;
            if ((s = layer_bwd(n, l, dstream, err)))
                return s;
        }
        if (n->p_emb >= 0)
            LAUNCH("embed_bwd", S0, B_(n->ids), B_(dstream),
                   B_(n->params[n->p_emb].g), I_(T), I_(D), I_(V));
    }
    float *loss = n->loss_host;
    s = qv_buffer_read(n->loss, 0, loss, (size_t)T * 4, err);
    if (!s) {
        double sum = 0.0;
        int64_t c = 0;
        for (int32_t t = 0; t < T; t++)
            if (targets[t] >= 0 && targets[t] < V) {
                sum += loss[t];
                c++;
            }
        if (loss_sum)
            *loss_sum += sum;
        if (count)
            *count += c;
    }
    return s;
}

qv_status qv_net_logits(qv_net *n, int32_t row, float *out, qv_err *err)
{
    if (!n->have_logits || row < 0 || row >= n->T)
        return qv_fail(err, QV_ERR_INVALID,
                       "train: no logits row %d (run a forward pass first; a run with "
                       "targets overwrites them unless the net keeps them: "
                       "keep_logits)",
                       row);
    return qv_buffer_read(n->logits, (size_t)row * (size_t)n->V * 4, out,
                          (size_t)n->V * 4, err);
}

/* ---- optimizer ---------------------------------------------------------- */

qv_status qv_net_zero_grads(qv_net *n, qv_err *err)
{
    for (int i = 0; i < n->n_params; i++) {
        qv_status s = fill(n, n->params[i].g, n->params[i].n, 0.0f, err);
        if (s)
            return s;
    }
    return QV_OK;
}

static qv_status sum_partial(qv_net *n, qv_buffer *x, int32_t count, int mode,
                             double *out, qv_err *err)
{
    LAUNCH("reduce_partial", S0, B_(x), B_(n->red), I_(count), I_(mode));
    size_t parts = ((size_t)count + 1023) / 1024;
    qv_status s = qv_buffer_read(n->red, 0, n->red_host, parts * 4, err);
    double acc = 0.0;
    for (size_t i = 0; i < parts && !s; i++)
        acc += n->red_host[i];
    *out = acc;
    return s;
}

qv_status qv_net_grad_norm(qv_net *n, double *norm, qv_err *err)
{
    double ss = 0.0;
    for (int i = 0; i < n->n_params; i++) {
        double v;
        qv_status s = sum_partial(n, n->params[i].g, n->params[i].n, 0, &v, err);
        if (s)
            return s;
        ss += v;
    }
    *norm = sqrt(ss);
    return QV_OK;
}

qv_status qv_net_adamw(qv_net *n, const qv_adamw_hp *hp, int64_t step,
                       float gscale, qv_err *err)
{
    if (step < 1)
        return qv_fail(err, QV_ERR_INVALID, "train: optimizer step %lld < 1",
                       (long long)step);
    float bc1 = (float)(1.0 - pow((double)hp->beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)hp->beta2, (double)step));
    for (int i = 0; i < n->n_params; i++) {
        param *p = &n->params[i];
        LAUNCH("adamw", S0, B_(p->p), B_(p->g), B_(p->m1), B_(p->m2), I_(p->n),
               F_(hp->lr), F_(hp->beta1), F_(hp->beta2), F_(hp->eps),
               F_(p->decay ? hp->weight_decay : 0.0f), F_(bc1), F_(bc2),
               F_(gscale));
    }
    return QV_OK;
}

qv_status qv_net_requantize(qv_net *n, qv_err *err)
{
    for (int l = 0; l < n->cfg.n_layers; l++)
        for (int i = 0; i < QV_LIN_COUNT; i++) {
            lin_dev *ld = &n->L[l].lin[i];
            if (ld->shadow < 0)
                continue;
            param *p = &n->params[ld->shadow];
            double sabs;
            qv_status s = sum_partial(n, p->p, p->n, 1, &sabs, err);
            if (s)
                return s;
            float scale = (float)(sabs / (double)p->n);
            if (!(scale >= 1e-5f))
                scale = 1e-5f;
            ld->scale = scale;
            LAUNCH("ternary_pack", S0, B_(p->p), B_(ld->packed), I_(ld->N),
                   I_(ld->K), F_(1.0f / scale));
        }
    return QV_OK;
}

/* ---- parameter access ---------------------------------------------------- */

int qv_net_n_params(const qv_net *n) { return n->n_params; }

void qv_net_param_info(const qv_net *n, int i, qv_param_info *out)
{
    *out = n->params[i].info;
}

static qv_buffer *param_buf(qv_net *n, int i, int which)
{
    param *p = &n->params[i];
    switch (which) {
    case QV_PARAM_VALUE: return p->p;
    case QV_PARAM_GRAD: return p->g;
    case QV_PARAM_M1: return p->m1;
    default: return p->m2;
    }
}

qv_status qv_net_param_read(qv_net *n, int i, int which, float *host,
                            qv_err *err)
{
    if (i < 0 || i >= n->n_params)
        return qv_fail(err, QV_ERR_INVALID, "train: no parameter %d", i);
    return qv_buffer_read(param_buf(n, i, which), 0, host,
                          (size_t)n->params[i].n * 4, err);
}

qv_status qv_net_param_write(qv_net *n, int i, int which, const float *host,
                             qv_err *err)
{
    if (i < 0 || i >= n->n_params)
        return qv_fail(err, QV_ERR_INVALID, "train: no parameter %d", i);
    return qv_buffer_write(param_buf(n, i, which), 0, host,
                           (size_t)n->params[i].n * 4, err);
}

qv_status qv_net_export(qv_net *n, qv_model *m, qv_err *err)
{
    qv_status s = QV_OK;
    if (n->p_emb >= 0)
        s = qv_net_param_read(n, n->p_emb, QV_PARAM_VALUE, m->tok_emb, err);
    if (!s && n->p_out_norm >= 0)
        s = qv_net_param_read(n, n->p_out_norm, QV_PARAM_VALUE, m->out_norm, err);
    if (!s && n->p_head >= 0)
        s = qv_net_param_read(n, n->p_head, QV_PARAM_VALUE, m->head, err);
    for (int l = 0; l < n->cfg.n_layers && !s; l++) {
        layer_dev *L = &n->L[l];
        qv_layer *hl = &m->layers[l];
        if (L->attn_norm >= 0)
            s = qv_net_param_read(n, L->attn_norm, QV_PARAM_VALUE, hl->attn_norm, err);
        if (!s && L->ffn_norm >= 0)
            s = qv_net_param_read(n, L->ffn_norm, QV_PARAM_VALUE, hl->ffn_norm, err);
        if (!s && L->attn_sub >= 0)
            s = qv_net_param_read(n, L->attn_sub, QV_PARAM_VALUE, hl->attn_sub_norm, err);
        if (!s && L->ffn_sub >= 0)
            s = qv_net_param_read(n, L->ffn_sub, QV_PARAM_VALUE, hl->ffn_sub_norm, err);
        for (int i = 0; i < QV_LIN_COUNT && !s; i++)
            if (L->lin[i].shadow >= 0 && hl->lin[i].w)
                s = qv_net_param_read(n, L->lin[i].shadow, QV_PARAM_VALUE,
                                      hl->lin[i].w, err);
    }
    if (!s)
        s = qv_model_requantize(m, err);
    return s;
}

void qv_net_memory_get(const qv_net *n, qv_net_memory *out)
{
    out->peak = qv_device_peak_bytes(n->dev);
    memcpy(out->by_tag, n->dev->tag_peak, sizeof out->by_tag);
}
