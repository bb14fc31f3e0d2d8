/* tests/test_model_io.c — train/model_io.c: the architectures and weight
 * types qvac reads, each written here as a synthetic GGUF with the real
 * tensor names, shapes and keys (tiny dims), loaded, run on every device,
 * and its logits compared with an independent float64 implementation of
 * that architecture's graph (below: `ref_forward`, written from llama.cpp's
 * src/models/bitnet.cpp and bitnet.cpp's 2B4T graph, not from qvac's
 * kernels); and every file whose meaning qvac cannot decide refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/half.h"
#include "formats/gguf.h"
#include "formats/i2s.h"
#include "formats/tq.h"
#include "kernels/backend.h"
#include "kernels/ternary.h"
#include "train/model.h"
#include "train/net.h"

static qv_devlist *devs;

static void open_devs(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
}

static void close_devs(void) { qv_devlist_destroy(&devs); }

TestSuite(model_io, .init = open_devs, .fini = close_devs, .timeout = 600);

/* ---- the synthetic model, as the test knows it ----------------------------- */

enum { D = 256, NL = 2, H = 4, HKV = 2, F = 512, V = 300, CTX = 64, T = 6 };
#define HD (D / H)

static const char *lin_tn[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                "ffn_gate", "ffn_up", "ffn_down"};

typedef struct truth {
    /* what the graph computes with, as the reference sees it */
    double emb[V][D];
    double head[V][D]; /* untied only */
    double out_norm[D];
    double attn_norm[NL][D], ffn_norm[NL][D], attn_sub[NL][D], ffn_sub[NL][F];
    int8_t *code[NL][7]; /* (N, K) */
    double scale[NL][7]; /* weight scale, scale tensors folded in */
    double lin_type_ok;
} truth;

typedef struct spec {
    const char *arch;       /* general.architecture */
    uint32_t lin_type;      /* BitLinear storage */
    int latent;             /* F32/F16/BF16 holding non-ternary weights */
    uint32_t emb_type;      /* token_embd storage */
    int scale_tensors;      /* blk.N.*.scale */
    int untied;             /* output.weight */
    int act_relu2, neox, sub_norm;  /* what the reference computes */
    const char *qvac_act, *qvac_rope; /* qvac-bitnet keys */
    int legacy;             /* "bitnet" + qvac.activation */
} spec;

static uint64_t rs = 12345;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static void lin_shape(int i, int *N, int *K)
{
    *N = i == 1 || i == 2 ? HKV * HD : i == 4 || i == 5 ? F : D;
    *K = i == 6 ? F : D;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16); /* truncation: the value kept is exact */
}
static double from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Everything the writer borrows. */
typedef struct bag {
    void *p[512];
    int n;
} bag;
static void *bag_alloc(bag *b, size_t n)
{
    cr_assert_lt(b->n, 512);
    void *p = calloc(1, n ? n : 1);
    cr_assert_not_null(p);
    b->p[b->n++] = p;
    return p;
}
static void bag_free(bag *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->p[i]);
    b->n = 0;
}

static void add_t(qv_gguf_writer *w, const char *name, int nd, int64_t ne0,
                  int64_t ne1, uint32_t type, const void *data)
{
    int64_t ne[2] = {ne0, ne1};
    size_t nb;
    qv_err e;
    cr_assert_eq(qv_ggml_nbytes(type, (uint32_t)nd, ne, &nb, &e), QV_OK, "%s",
                 e.msg);
    cr_assert_eq(qv_gguf_writer_add_tensor(w, name, (uint32_t)nd, ne, type,
                                           data, nb, &e),
                 QV_OK, "%s: %s", name, e.msg);
}

/* A float vector: F32, stored exactly. */
static void add_vec(qv_gguf_writer *w, bag *b, const char *name, double *dst,
                    int n, double lo, double hi)
{
    float *v = bag_alloc(b, (size_t)n * 4);
    for (int i = 0; i < n; i++) {
        v[i] = (float)(lo + (hi - lo) * unif());
        dst[i] = v[i];
    }
    add_t(w, name, 1, n, 1, QV_GGML_F32, v);
}

/* The reference's own Q6_K dequantisation, from ggml's block_q6_K layout:
 * ql[128] low nibbles, qh[64] high two bits, scales[16] int8, d f16. Value
 * i (0..255) of the block: half n = i / 128, r = i % 128, group g = r / 32,
 * l = r % 32; low nibble from ql[64n + l + 32*(g & 1)], taking the high
 * nibble when g >= 2; high bits (qh[32n + l] >> 2g) & 3; scale
 * scales[8n + l/16 + 2g]; y = d * scale * (q - 32). */
static double q6k_value(const uint8_t *blk, int i)
{
    int n = i / 128, r = i % 128, g = r / 32, l = r % 32;
    uint8_t lo = blk[64 * n + l + 32 * (g & 1)];
    int low = g >= 2 ? lo >> 4 : lo & 15;
    int high = (blk[128 + 32 * n + l] >> (2 * g)) & 3;
    int8_t sc = (int8_t)blk[192 + 8 * n + l / 16 + 2 * g];
    uint16_t dh = (uint16_t)(blk[208] | blk[209] << 8);
    return (double)qv_f16_to_f32(dh) * sc * ((low | high << 4) - 32);
}

static void add_emb(qv_gguf_writer *w, bag *b, const char *name,
                    double (*dst)[D], uint32_t type)
{
    size_t n = (size_t)V * D;
    if (type == QV_GGML_F32 || type == QV_GGML_F16 || type == QV_GGML_BF16) {
        void *buf = bag_alloc(b, n * 4);
        for (size_t i = 0; i < n; i++) {
            float f = (float)((unif() * 2 - 1) * 0.8);
            double *d = &dst[i / D][i % D];
            if (type == QV_GGML_F32) {
                ((float *)buf)[i] = f;
                *d = f;
            } else if (type == QV_GGML_F16) {
                uint16_t h = qv_f32_to_f16(f);
                ((uint16_t *)buf)[i] = h;
                *d = qv_f16_to_f32(h);
            } else {
                uint16_t h = to_bf16(f);
                ((uint16_t *)buf)[i] = h;
                *d = from_bf16(h);
            }
        }
        add_t(w, name, 2, D, V, type, buf);
    } else if (type == QV_GGML_Q8_0) {
        uint8_t *buf = bag_alloc(b, n / 32 * 34);
        for (size_t blk = 0; blk < n / 32; blk++) {
            uint8_t *p = buf + blk * 34;
            uint16_t dh = qv_f32_to_f16((float)(0.002 + 0.006 * unif()));
            p[0] = (uint8_t)dh;
            p[1] = (uint8_t)(dh >> 8);
            for (int j = 0; j < 32; j++) {
                int8_t q = (int8_t)((int)(rnd() % 255) - 127);
                p[2 + j] = (uint8_t)q;
                size_t i = blk * 32 + (size_t)j;
                dst[i / D][i % D] = (double)qv_f16_to_f32(dh) * q;
            }
        }
        add_t(w, name, 2, D, V, type, buf);
    } else {
        cr_assert_eq(type, QV_GGML_Q6_K);
        uint8_t *buf = bag_alloc(b, n / 256 * 210);
        for (size_t blk = 0; blk < n / 256; blk++) {
            uint8_t *p = buf + blk * 210;
            for (int j = 0; j < 192; j++)
                p[j] = (uint8_t)rnd();
            for (int j = 0; j < 16; j++)
                p[192 + j] = (uint8_t)(int8_t)((int)(rnd() % 63) - 31);
            uint16_t dh = qv_f32_to_f16((float)(0.0005 + 0.0005 * unif()));
            p[208] = (uint8_t)dh;
            p[209] = (uint8_t)(dh >> 8);
            for (int i = 0; i < 256; i++) {
                size_t at = blk * 256 + (size_t)i;
                dst[at / D][at % D] = q6k_value(p, i);
            }
        }
        add_t(w, name, 2, D, V, type, buf);
    }
}

/* One BitLinear weight in the spec's storage; the truth keeps its codes
 * and scale (for latent weights: the absmean rule of BitNet b1.58 applied
 * here in double, as the Hugging Face BitLinear does). */
static void add_lin(qv_gguf_writer *w, bag *b, const spec *sp, truth *tr,
                    int l, int i)
{
    int N, K;
    lin_shape(i, &N, &K);
    size_t n = (size_t)N * (size_t)K;
    int8_t *c = malloc(n);
    cr_assert_not_null(c);
    tr->code[l][i] = c;
    float scale = qv_f16_to_f32(qv_f32_to_f16((float)(0.01 + 0.05 * unif())));
    for (size_t j = 0; j < n; j++)
        c[j] = (int8_t)((int)(rnd() % 3) - 1);
    tr->scale[l][i] = scale;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin_tn[i]);
    qv_err e;
    if (sp->lin_type == QV_GGML_TQ2_0 || sp->lin_type == QV_GGML_TQ1_0 ||
        sp->lin_type == QV_GGML_I2_S) {
        uint32_t *packed = bag_alloc(b, qv_ternary_bytes(N, K));
        cr_assert_eq(qv_ternary_pack(c, N, K, packed, &e), QV_OK, "%s", e.msg);
        int64_t ne[2] = {K, N};
        size_t nb;
        cr_assert_eq(qv_ggml_nbytes(sp->lin_type, 2, ne, &nb, &e), QV_OK);
        uint8_t *buf = bag_alloc(b, nb);
        qv_status s = sp->lin_type == QV_GGML_TQ2_0
                          ? qv_ternary_to_tq2_0(packed, N, K, scale, buf, nb, &e)
                      : sp->lin_type == QV_GGML_TQ1_0
                          ? qv_ternary_to_tq1_0(packed, N, K, scale, buf, nb, &e)
                          : qv_ternary_to_i2s(packed, N, K, scale, buf, nb, &e);
        cr_assert_eq(s, QV_OK, "%s", e.msg);
        add_t(w, name, 2, K, N, sp->lin_type, buf);
    } else {
        /* floats: code * scale (what llama.cpp's converter writes), or a
         * latent weight the loader must quantise */
        double *lat = malloc(n * sizeof *lat);
        cr_assert_not_null(lat);
        for (size_t j = 0; j < n; j++)
            lat[j] = sp->latent ? (unif() * 2 - 1) * 0.05 : c[j] * (double)scale;
        void *buf = bag_alloc(b, n * 4);
        for (size_t j = 0; j < n; j++) {
            float f = (float)lat[j];
            if (sp->lin_type == QV_GGML_F32) {
                ((float *)buf)[j] = f;
            } else if (sp->lin_type == QV_GGML_F16) {
                ((uint16_t *)buf)[j] = qv_f32_to_f16(f);
                lat[j] = qv_f16_to_f32(((uint16_t *)buf)[j]);
            } else {
                ((uint16_t *)buf)[j] = to_bf16(f);
                lat[j] = from_bf16(((uint16_t *)buf)[j]);
            }
        }
        if (sp->latent) {
            double sum = 0;
            for (size_t j = 0; j < n; j++)
                sum += fabs(lat[j]);
            double sc = sum / (double)n;
            for (size_t j = 0; j < n; j++) {
                double r = nearbyint(lat[j] / sc);
                c[j] = (int8_t)(r > 1 ? 1 : r < -1 ? -1 : r);
            }
            tr->scale[l][i] = sc;
        } else {
            tr->scale[l][i] = sp->lin_type == QV_GGML_F32 ? (double)scale
                              : sp->lin_type == QV_GGML_F16
                                  ? (double)qv_f16_to_f32(qv_f32_to_f16(scale))
                                  : from_bf16(to_bf16(scale));
        }
        free(lat);
        add_t(w, name, 2, K, N, sp->lin_type, buf);
    }
    if (sp->scale_tensors) {
        float *s1 = bag_alloc(b, 4);
        *s1 = (float)(0.5 + 1.5 * unif());
        snprintf(name, sizeof name, "blk.%d.%s.scale", l, lin_tn[i]);
        add_t(w, name, 1, 1, 1, QV_GGML_F32, s1);
        tr->scale[l][i] *= *s1;
    }
}

/* Writes the spec's model into *out (malloc'd) and fills the truth. */
static void make_model(const spec *sp, truth *tr, uint8_t **out, size_t *n)
{
    bag b = {{0}, 0};
    qv_gguf_writer *w = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    const char *A = sp->legacy ? "bitnet" : sp->arch;
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", A, s), k)
    cr_assert_eq(qv_gguf_writer_set_str(w, "general.architecture", A, &e), QV_OK);
    qv_gguf_writer_set_u32(w, KEY("context_length"), CTX, &e);
    qv_gguf_writer_set_u32(w, KEY("embedding_length"), D, &e);
    qv_gguf_writer_set_u32(w, KEY("block_count"), NL, &e);
    qv_gguf_writer_set_u32(w, KEY("feed_forward_length"), F, &e);
    qv_gguf_writer_set_u32(w, KEY("attention.head_count"), H, &e);
    qv_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), HKV, &e);
    qv_gguf_writer_set_u32(w, KEY("rope.dimension_count"), HD, &e);
    qv_gguf_writer_set_f32(w, KEY("rope.freq_base"), 500000.0f, &e);
    qv_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f, &e);
    qv_gguf_writer_set_u32(w, KEY("vocab_size"), V, &e);
    if (!strcmp(A, "bitnet") && !sp->legacy) {
        /* what llama.cpp's converter adds for BitnetModel */
        qv_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear", &e);
        qv_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), 1.0f, &e);
    }
    if (sp->qvac_act)
        qv_gguf_writer_set_str(w, KEY("activation"), sp->qvac_act, &e);
    if (sp->qvac_rope)
        qv_gguf_writer_set_str(w, KEY("rope.type"), sp->qvac_rope, &e);
    if (sp->legacy)
        qv_gguf_writer_set_str(w, "qvac.activation",
                               sp->act_relu2 ? "relu2" : "silu", &e);
#undef KEY
    add_emb(w, &b, "token_embd.weight", tr->emb, sp->emb_type);
    add_vec(w, &b, "output_norm.weight", tr->out_norm, D, 0.5, 1.5);
    if (sp->untied)
        add_emb(w, &b, "output.weight", tr->head, QV_GGML_F32);
    for (int l = 0; l < NL; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add_vec(w, &b, name, tr->attn_norm[l], D, 0.5, 1.5);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        add_vec(w, &b, name, tr->ffn_norm[l], D, 0.5, 1.5);
        if (sp->sub_norm) {
            snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
            add_vec(w, &b, name, tr->attn_sub[l], D, 0.5, 1.5);
            snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
            add_vec(w, &b, name, tr->ffn_sub[l], F, 0.5, 1.5);
        }
        for (int i = 0; i < 7; i++)
            add_lin(w, &b, sp, tr, l, i);
    }
    cr_assert_eq(qv_gguf_write_mem(w, out, n, &e), QV_OK, "%s", e.msg);
    qv_gguf_writer_free(w);
    bag_free(&b);
}

static void truth_free(truth *tr)
{
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < 7; i++)
            free(tr->code[l][i]);
}

/* ---- the float64 reference graph ------------------------------------------ */

#ifndef AMBIG
#define AMBIG 3e-5
#endif
static int ambiguous; /* int8 roundings too close to .5 to call */

static void rmsnorm(const double *x, const double *g, int n, double *y)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * r * (g ? g[i] : 1.0);
}

/* BitLinear with BitNet b1.58's activation rule: per token, int8 codes of
 * x * 127 / max|x| (rounded half away from zero), the integer product with
 * the ternary codes, then / (127 / max|x|) * weight scale. */
static void bitlin(const double *x, const int8_t *c, double scale, int N,
                   int K, double *y)
{
    double amax = 1e-5;
    for (int k = 0; k < K; k++)
        amax = fmax(amax, fabs(x[k]));
    double s = 127.0 / amax;
    int xq[1024];
    for (int k = 0; k < K; k++) {
        double v = x[k] * s;
        double f = fabs(v) - floor(fabs(v));
        if (fabs(f - 0.5) < AMBIG)
            ambiguous++;
        double r = v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
        xq[k] = (int)fmin(fmax(r, -128), 127);
    }
    for (int nn = 0; nn < N; nn++) {
        long acc = 0;
        for (int k = 0; k < K; k++)
            acc += (long)xq[k] * c[(size_t)nn * K + k];
        y[nn] = (double)acc / s * scale;
    }
}

/* RoPE over the heads of one row at position p: pairs (2i, 2i+1) or, NEOX,
 * (i, i + HD/2), angle p * theta^(-2i/HD). */
static void rope(double *v, int nh, int p, int neox)
{
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < HD / 2; i++) {
            double a = p * pow(500000.0, -2.0 * i / HD);
            double *x0 = v + h * HD + (neox ? i : 2 * i);
            double *x1 = v + h * HD + (neox ? i + HD / 2 : 2 * i + 1);
            double c = cos(a), s = sin(a), u = *x0, w = *x1;
            *x0 = u * c - w * s;
            *x1 = u * s + w * c;
        }
}

static void ref_forward(const spec *sp, const truth *tr, const int *tok,
                        double (*logits)[V])
{
    static double x[T][D], xn[T][D], q[T][D], k[T][HKV * HD], v[T][HKV * HD],
        att[T][D], tmp[T][F], g[T][F], u[T][F], hh[T][F];
    for (int t = 0; t < T; t++)
        memcpy(x[t], tr->emb[tok[t]], sizeof x[t]);
    for (int l = 0; l < NL; l++) {
        for (int t = 0; t < T; t++) {
            rmsnorm(x[t], tr->attn_norm[l], D, xn[t]);
            bitlin(xn[t], tr->code[l][0], tr->scale[l][0], D, D, q[t]);
            bitlin(xn[t], tr->code[l][1], tr->scale[l][1], HKV * HD, D, k[t]);
            bitlin(xn[t], tr->code[l][2], tr->scale[l][2], HKV * HD, D, v[t]);
            rope(q[t], H, t, sp->neox);
            rope(k[t], HKV, t, sp->neox);
        }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                int kh = h / (H / HKV);
                double sc[T], mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < HD; i++)
                        d += q[t][h * HD + i] * k[j][kh * HD + i];
                    sc[j] = d / sqrt((double)HD);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < HD; i++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++)
                        a += sc[j] / sum * v[j][kh * HD + i];
                    att[t][h * HD + i] = a;
                }
            }
        for (int t = 0; t < T; t++) {
            if (sp->sub_norm)
                rmsnorm(att[t], tr->attn_sub[l], D, att[t]);
            bitlin(att[t], tr->code[l][3], tr->scale[l][3], D, D, tmp[t]);
            for (int i = 0; i < D; i++)
                x[t][i] += tmp[t][i];
            rmsnorm(x[t], tr->ffn_norm[l], D, xn[t]);
            bitlin(xn[t], tr->code[l][4], tr->scale[l][4], F, D, g[t]);
            bitlin(xn[t], tr->code[l][5], tr->scale[l][5], F, D, u[t]);
            for (int i = 0; i < F; i++) {
                double a = g[t][i];
                double act = sp->act_relu2 ? (a > 0 ? a * a : 0.0)
                                           : a / (1.0 + exp(-a));
                hh[t][i] = act * u[t][i];
            }
            if (sp->sub_norm)
                rmsnorm(hh[t], tr->ffn_sub[l], F, hh[t]);
            bitlin(hh[t], tr->code[l][6], tr->scale[l][6], D, F, tmp[t]);
            for (int i = 0; i < D; i++)
                x[t][i] += tmp[t][i];
        }
    }
    for (int t = 0; t < T; t++) {
        rmsnorm(x[t], tr->out_norm, D, xn[t]);
        for (int vv = 0; vv < V; vv++) {
            const double *row = sp->untied ? tr->head[vv] : tr->emb[vv];
            double a = 0;
            for (int i = 0; i < D; i++)
                a += xn[t][i] * row[i];
            logits[t][vv] = a;
        }
    }
}

/* ---- the comparison -------------------------------------------------------- */

static truth TR;

/* Loads the spec's model, checks what the loader decided, and compares
 * every device's logits with the reference: max |dlogit| / max |logit|. */
static void check_spec(const spec *sp, const char *label)
{
    memset(&TR, 0, sizeof TR);
    rs = 777;
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    make_model(sp, &TR, &bytes, &nbytes);
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_load_mem(bytes, nbytes, label, &m, &e), QV_OK,
                 "%s: %s", label, e.msg);
    cr_assert_eq(m->cfg.act, sp->act_relu2 ? QV_ACT_RELU2 : QV_ACT_SILU, "%s", label);
    cr_assert_eq(m->cfg.rope_neox, sp->neox, "%s", label);
    cr_assert_eq(m->cfg.tied, !sp->untied, "%s", label);
    cr_assert_eq(m->cfg.sub_norm, sp->sub_norm, "%s", label);
    if (sp->latent)
        cr_assert(strstr(m->notes, "quantised to ternary at load"), "%s: %s",
                  label, m->notes);
    if (sp->legacy)
        cr_assert(strstr(m->notes, "qvac 0.1"), "%s: %s", label, m->notes);

    /* inputs on which the int8 roundings are all well away from .5 */
    int tok[T];
    static double ref[T][V];
    int tries = 0;
    do {
        cr_assert_lt(tries, 50, "%s: no well-conditioned input in 50 draws", label);
        for (int t = 0; t < T; t++)
            tok[t] = (int)(rnd() % V);
        ambiguous = 0;
        ref_forward(sp, &TR, tok, ref);
        tries++;
    } while (ambiguous);

    double lmax = 0;
    for (int t = 0; t < T; t++)
        for (int vv = 0; vv < V; vv++)
            lmax = fmax(lmax, fabs(ref[t][vv]));
    cr_assert_gt(lmax, 0.1, "%s: degenerate logits", label);
    for (size_t d = 0; d < devs->n; d++) {
        qv_device *dev = devs->dev[d];
        qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = T};
        qv_net *net = NULL;
        cr_assert_eq(qv_net_new(dev, m, &o, &net, &e), QV_OK, "%s", e.msg);
        int32_t tk[T];
        for (int t = 0; t < T; t++)
            tk[t] = tok[t];
        double ls;
        int64_t cnt;
        cr_assert_eq(qv_net_run(net, tk, NULL, 0, 1.0f, &ls, &cnt, &e), QV_OK,
                     "%s", e.msg);
        double worst = 0;
        float row[V];
        for (int t = 0; t < T; t++) {
            cr_assert_eq(qv_net_logits(net, t, row, &e), QV_OK, "%s", e.msg);
            double wt = 0;
            for (int vv = 0; vv < V; vv++)
                wt = fmax(wt, fabs(row[vv] - ref[t][vv]));
            if (getenv("QV_DEBUG_MIO"))
                printf("  t=%d tok=%d err %.3e\n", t, tok[t], wt);
            worst = fmax(worst, wt);
        }
        qv_net_free(&net);
        printf("%-44s %-9s max|dlogit|/max|logit| = %.2e (logits up to %.2f, "
               "input draw %d)\n", label, dev->info.id, worst / lmax, lmax,
               tries);
        cr_expect_leq(worst / lmax, 1e-4, "%s on %s: %.3e", label,
                      dev->info.id, worst / lmax);
    }
    qv_model_free(&m);
    free(bytes);
    truth_free(&TR);
}

#define BITNET(lt, et) \
    {.arch = "bitnet", .lin_type = (lt), .emb_type = (et), .neox = 1, .sub_norm = 1}

Test(model_io, llamacpp_bitnet_graph_every_weight_type)
{
    const uint32_t lt[] = {QV_GGML_TQ2_0, QV_GGML_TQ1_0, QV_GGML_I2_S,
                           QV_GGML_F32, QV_GGML_F16, QV_GGML_BF16};
    for (size_t i = 0; i < sizeof lt / sizeof lt[0]; i++) {
        spec sp = BITNET(lt[i], QV_GGML_F32);
        char label[64];
        snprintf(label, sizeof label, "bitnet %s", qv_ggml_type_name(lt[i]));
        check_spec(&sp, label);
    }
}

Test(model_io, llamacpp_bitnet_embedding_types)
{
    const uint32_t et[] = {QV_GGML_F16, QV_GGML_BF16, QV_GGML_Q8_0,
                           QV_GGML_Q6_K};
    for (size_t i = 0; i < sizeof et / sizeof et[0]; i++) {
        spec sp = BITNET(QV_GGML_TQ2_0, et[i]);
        char label[64];
        snprintf(label, sizeof label, "bitnet TQ2_0, token_embd %s",
                 qv_ggml_type_name(et[i]));
        check_spec(&sp, label);
    }
}

Test(model_io, llamacpp_bitnet_scale_tensors_and_latent_weights)
{
    spec sp = BITNET(QV_GGML_TQ2_0, QV_GGML_F32);
    sp.scale_tensors = 1;
    check_spec(&sp, "bitnet TQ2_0 + blk.N.*.scale");
    spec lat = BITNET(QV_GGML_F32, QV_GGML_F32);
    lat.latent = 1;
    check_spec(&lat, "bitnet F32 latent (absmean at load)");
    lat.lin_type = QV_GGML_BF16;
    check_spec(&lat, "bitnet BF16 latent (absmean at load)");
}

Test(model_io, bitnet_b158_2b4t_graph)
{
    spec sp = {.arch = QV_ARCH_B158_NAME, .lin_type = QV_GGML_I2_S,
               .emb_type = QV_GGML_F16, .act_relu2 = 1,
               .neox = QV_ARCH_B158_NEOX, .sub_norm = 1};
    check_spec(&sp, "bitnet-b1.58 I2_S, token_embd F16");
    sp.lin_type = QV_GGML_TQ2_0;
    check_spec(&sp, "bitnet-b1.58 TQ2_0");
}

Test(model_io, qvac_bitnet_explicit_semantics)
{
    spec sp = {.arch = "qvac-bitnet", .lin_type = QV_GGML_TQ2_0,
               .emb_type = QV_GGML_F32, .act_relu2 = 1, .neox = 0,
               .sub_norm = 1, .untied = 1, .qvac_act = "relu2",
               .qvac_rope = "norm"};
    check_spec(&sp, "qvac-bitnet relu2 norm untied");
    spec s2 = {.arch = "qvac-bitnet", .lin_type = QV_GGML_TQ1_0,
               .emb_type = QV_GGML_F32, .act_relu2 = 0, .neox = 1,
               .sub_norm = 0, .untied = 0, .qvac_act = "silu",
               .qvac_rope = "neox"};
    check_spec(&s2, "qvac-bitnet silu neox tied, no sub-norms");
}

Test(model_io, legacy_qvac_bitnet_read_as_its_keys_say)
{
    spec sp = {.arch = "bitnet", .legacy = 1, .lin_type = QV_GGML_TQ2_0,
               .emb_type = QV_GGML_F32, .act_relu2 = 1, .neox = 0,
               .sub_norm = 1, .untied = 1};
    check_spec(&sp, "bitnet + qvac.activation (qvac 0.1)");
}

/* ---- refusals ------------------------------------------------------------------ */

/* A tiny well-formed qvac-bitnet/bitnet file to break one thing of: the
 * model is written by qv_model_save, then mutate() edits a writer that
 * copies it key by key and tensor by tensor. */
typedef void (*mutator)(qv_gguf_writer *w, const qv_gguf *g, int *skip_tensor,
                        const char *tname);

static qv_model *small_model(int act, int neox, int tied)
{
    qv_model_config c = {.vocab = 300, .dim = 256, .n_layers = 1,
                         .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 256,
                         .ctx = 32, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .act = act, .sub_norm = 1, .tied = tied,
                         .rope_neox = neox};
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_synthetic(&c, 5, &m, &e), QV_OK, "%s", e.msg);
    return m;
}

/* Saves m, then rewrites the file with key `key` set to the string `val`
 * (NULL: removed) and tensor `drop` left out (NULL: none) and `extra`
 * added (a copy of token_embd.weight under that name; NULL: none), and a
 * vocabulary of n_tokens tokens (0: none). */
static qv_status load_edited_tok(qv_model *m, const char *key, const char *val,
                                 uint32_t u32, const char *drop, const char *extra,
                                 size_t n_tokens, qv_err *e)
{
    char path[] = "/tmp/qvac-mio-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(qv_model_save(m, path, e), QV_OK, "%s", e->msg);
    qv_gguf *g = NULL;
    cr_assert_eq(qv_gguf_open(path, &g, e), QV_OK, "%s", e->msg);
    qv_gguf_writer *w = NULL;
    cr_assert_eq(qv_gguf_writer_new(&w, e), QV_OK);
    int key_done = 0;
    for (size_t i = 0; i < qv_gguf_kv_count(g); i++) {
        const qv_gguf_kv *kv = qv_gguf_kv_at(g, i);
        if (!strcmp(kv->key, "general.alignment"))
            continue;
        if (key && !strcmp(kv->key, key)) {
            key_done = 1;
            if (val)
                qv_gguf_writer_set_str(w, key, val, e);
            else if (u32)
                qv_gguf_writer_set_u32(w, key, u32, e);
            continue;
        }
        if (kv->type == QV_GGUF_STRING) {
            const char *sv;
            qv_gguf_get_str(g, kv->key, &sv, NULL, e);
            qv_gguf_writer_set_str(w, kv->key, sv, e);
        } else if (kv->type == QV_GGUF_UINT32) {
            uint32_t v;
            qv_gguf_get_u32(g, kv->key, &v, e);
            qv_gguf_writer_set_u32(w, kv->key, v, e);
        } else if (kv->type == QV_GGUF_FLOAT32) {
            float v;
            qv_gguf_get_f32(g, kv->key, &v, e);
            qv_gguf_writer_set_f32(w, kv->key, v, e);
        }
    }
    if (key && !key_done) {
        if (val)
            qv_gguf_writer_set_str(w, key, val, e);
        else if (u32)
            qv_gguf_writer_set_u32(w, key, u32, e);
    }
    for (size_t i = 0; i < qv_gguf_tensor_count(g); i++) {
        const qv_gguf_tensor *t = qv_gguf_tensor_at(g, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        qv_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type,
                                  t->data, t->nbytes, e);
    }
    if (n_tokens) {
        const char **tk = calloc(n_tokens, sizeof *tk);
        char (*txt)[24] = calloc(n_tokens, sizeof *txt);
        cr_assert(tk && txt);
        for (size_t i = 0; i < n_tokens; i++) {
            snprintf(txt[i], sizeof txt[i], "t%zu", i);
            tk[i] = txt[i];
        }
        qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", e);
        cr_assert_eq(qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", tk, n_tokens, e),
                     QV_OK);
        free(tk);
        free(txt);
    }
    if (extra) {
        const qv_gguf_tensor *t = qv_gguf_find_tensor(g, "token_embd.weight");
        qv_gguf_writer_add_tensor(w, extra, t->n_dims, t->ne, t->type, t->data,
                                  t->nbytes, e);
    }
    uint8_t *bytes = NULL;
    size_t n = 0;
    cr_assert_eq(qv_gguf_write_mem(w, &bytes, &n, e), QV_OK, "%s", e->msg);
    qv_gguf_writer_free(w);
    qv_gguf_free(g);
    remove(path);
    qv_model *back = NULL;
    qv_status s = qv_model_load_mem(bytes, n, "edited", &back, e);
    qv_model_free(&back);
    free(bytes);
    return s;
}

static qv_status load_edited(qv_model *m, const char *key, const char *val,
                             uint32_t u32, const char *drop, const char *extra,
                             qv_err *e)
{
    return load_edited_tok(m, key, val, u32, drop, extra, 0, e);
}

Test(model_io, writer_names_the_architecture_that_computes_it)
{
    struct { int act, neox, tied; const char *arch; } c[] = {
        {QV_ACT_SILU, 1, 1, "bitnet"},
        {QV_ACT_RELU2, QV_ARCH_B158_NEOX, 1, QV_ARCH_B158_NAME},
        {QV_ACT_RELU2, 0, 0, "qvac-bitnet"},
        {QV_ACT_SILU, 0, 1, "qvac-bitnet"},
        {QV_ACT_SILU, 1, 0, "qvac-bitnet"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        qv_model *m = small_model(c[i].act, c[i].neox, c[i].tied);
        char path[] = "/tmp/qvac-mio-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        close(fd);
        qv_err e;
        cr_assert_eq(qv_model_save(m, path, &e), QV_OK, "%s", e.msg);
        qv_gguf *g = NULL;
        cr_assert_eq(qv_gguf_open(path, &g, &e), QV_OK, "%s", e.msg);
        const char *a = NULL;
        cr_assert_eq(qv_gguf_get_str(g, "general.architecture", &a, NULL, &e), QV_OK);
        cr_expect_str_eq(a, c[i].arch);
        cr_expect_null(qv_gguf_find_kv(g, "qvac.activation"));
        qv_gguf_free(g);
        qv_model *back = NULL;
        cr_assert_eq(qv_model_load(path, &back, &e), QV_OK, "%s", e.msg);
        cr_expect_eq(back->cfg.act, c[i].act);
        cr_expect_eq(back->cfg.rope_neox, c[i].neox);
        cr_expect_eq(back->cfg.tied, c[i].tied);
        cr_expect_str_eq(back->notes, "");
        qv_model_free(&back);
        qv_model_free(&m);
        remove(path);
    }
}

Test(model_io, refuses_another_architecture)
{
    qv_model *m = small_model(QV_ACT_SILU, 1, 1);
    qv_err e;
    cr_assert_eq(load_edited(m, "general.architecture", "llama", 0, NULL, NULL, &e),
                 QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "general.architecture = 'llama'"), "%s", e.msg);
    cr_expect(strstr(e.msg, "bitnet"), "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_an_unknown_activation)
{
    qv_model *m = small_model(QV_ACT_RELU2, 0, 0); /* qvac-bitnet */
    qv_err e;
    cr_assert_eq(load_edited(m, "qvac-bitnet.activation", "gelu", 0, NULL, NULL, &e),
                 QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "qvac-bitnet.activation = 'gelu'"), "%s", e.msg);
    cr_assert_eq(load_edited(m, "qvac-bitnet.activation", NULL, 0, NULL, NULL, &e),
                 QV_ERR_CORRUPT, "a qvac-bitnet file without its activation");
    cr_expect(strstr(e.msg, "qvac-bitnet.activation is missing"), "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_an_undecided_rope)
{
    qv_model *m = small_model(QV_ACT_RELU2, 0, 0);
    qv_err e;
    cr_assert_eq(load_edited(m, "qvac-bitnet.rope.type", NULL, 0, NULL, NULL, &e),
                 QV_ERR_CORRUPT);
    cr_expect(strstr(e.msg, "qvac-bitnet.rope.type is missing"), "%s", e.msg);
    cr_assert_eq(load_edited(m, "qvac-bitnet.rope.scaling.type", "yarn", 0, NULL,
                             NULL, &e), QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "'yarn'"), "%s", e.msg);
    cr_assert_eq(load_edited(m, "qvac-bitnet.rope.dimension_count", NULL, 32,
                             NULL, NULL, &e), QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "rope.dimension_count = 32"), "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_a_vocabulary_that_does_not_match_the_embedding)
{
    qv_model *m = small_model(QV_ACT_SILU, 1, 1);
    qv_err e;
    cr_assert_eq(load_edited(m, "bitnet.vocab_size", NULL, 301, NULL, NULL, &e),
                 QV_ERR_CORRUPT);
    cr_expect(strstr(e.msg, "bitnet.vocab_size = 301"), "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_a_tied_graph_with_an_output_head)
{
    qv_model *m = small_model(QV_ACT_SILU, 1, 1);
    qv_err e;
    cr_assert_eq(load_edited(m, NULL, NULL, 0, NULL, "output.weight", &e),
                 QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "output.weight"), "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_bitnet_without_sub_norms)
{
    qv_model *m = small_model(QV_ACT_SILU, 1, 1);
    qv_err e;
    cr_assert_eq(load_edited(m, NULL, NULL, 0, "blk.0.attn_sub_norm.weight",
                             NULL, &e), QV_ERR_CORRUPT);
    cr_expect(strstr(e.msg, "sub-norms"), "%s", e.msg);
    qv_model_free(&m);
}

/* A vocabulary held in row blocks (what a 128k-token embedding needs on a
 * device whose largest allocation is 128 MiB) computes the same logits and
 * the same adapter gradients as one buffer, F16 and F32 tables, tied and
 * untied heads. */
Test(model_io, vocabulary_in_row_blocks_is_the_same_function)
{
    for (int tied = 0; tied < 2; tied++)
        for (int f32 = 0; f32 < 2; f32++) {
            qv_model *m = small_model(QV_ACT_SILU, 1, tied);
            if (!f32) /* halves exactly: held in f16 */
                for (size_t i = 0; i < (size_t)300 * 256; i++) {
                    m->tok_emb[i] = qv_f16_to_f32(qv_f32_to_f16(m->tok_emb[i]));
                    if (m->head)
                        m->head[i] = qv_f16_to_f32(qv_f32_to_f16(m->head[i]));
                }
            else
                m->tok_emb[7] = 0.1234567f; /* not a half: f32 */
            for (size_t d = 0; d < devs->n; d++) {
                double loss[2];
                float logit[2][300], grad[2][8];
                for (int blocks = 0; blocks < 2; blocks++) {
                    qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 8,
                                     .rank = 4, .alpha = 8, .targets = 1u << QV_LIN_Q,
                                     .seed = 3, .lora_b_std = 0.02f,
                                     .vocab_block_rows = blocks ? 70 : 0,
                                     .keep_logits = 1};
                    qv_net *net = NULL;
                    qv_err e;
                    cr_assert_eq(qv_net_new(devs->dev[d], m, &o, &net, &e), QV_OK, "%s",
                                 e.msg);
                    int32_t tok[8] = {0, 69, 70, 139, 140, 280, 299, 5};
                    int32_t tgt[8] = {69, 70, 139, 140, 280, 299, 5, 1};
                    double sum = 0;
                    int64_t cnt = 0;
                    cr_assert_eq(qv_net_zero_grads(net, &e), QV_OK, "%s", e.msg);
                    cr_assert_eq(qv_net_run(net, tok, tgt, 1, 1.0f, &sum, &cnt, &e), QV_OK,
                                 "%s", e.msg);
                    loss[blocks] = sum / (double)cnt;
                    cr_assert_eq(qv_net_logits(net, 6, logit[blocks], &e), QV_OK);
                    float *g = malloc(4u * 4u * 256u);
                    cr_assert_eq(qv_net_param_read(net, 0, QV_PARAM_GRAD, g, &e), QV_OK,
                                 "%s", e.msg);
                    memcpy(grad[blocks], g, sizeof grad[blocks]);
                    free(g);
                    qv_net_free(&net);
                }
                cr_expect(fabs(loss[0] - loss[1]) <= 1e-6 * fabs(loss[0]),
                          "%s tied=%d f32=%d: loss %.9g vs %.9g in blocks",
                          devs->dev[d]->info.id, tied, f32, loss[0], loss[1]);
                for (int v = 0; v < 300; v++)
                    cr_expect(fabsf(logit[0][v] - logit[1][v]) <= 1e-5f,
                              "%s: logit %d %g vs %g", devs->dev[d]->info.id, v,
                              (double)logit[0][v], (double)logit[1][v]);
                for (int i = 0; i < 8; i++)
                    cr_expect(fabsf(grad[0][i] - grad[1][i]) <=
                                  1e-4f * (fabsf(grad[0][i]) + 1e-6f),
                              "%s: grad %d %g vs %g", devs->dev[d]->info.id, i,
                              (double)grad[0][i], (double)grad[1][i]);
                printf("vocabulary in blocks of 70 rows, %s tied=%d %s: loss %.6f = %.6f\n",
                       devs->dev[d]->info.id, tied, f32 ? "f32" : "f16", loss[0], loss[1]);
            }
            qv_model_free(&m);
        }
}

Test(model_io, refuses_a_tokenizer_that_does_not_match_the_embedding)
{
    qv_model *m = small_model(QV_ACT_SILU, 1, 1); /* 300 rows */
    qv_err e;
    cr_assert_eq(load_edited_tok(m, NULL, NULL, 0, NULL, NULL, 299, &e), QV_ERR_CORRUPT);
    cr_expect(strstr(e.msg, "tokenizer.ggml.tokens has 299 tokens"), "%s", e.msg);
    cr_assert_eq(load_edited_tok(m, NULL, NULL, 0, NULL, NULL, 300, &e), QV_OK, "%s", e.msg);
    qv_model_free(&m);
}

Test(model_io, refuses_scale_tensors_the_2b4t_graph_does_not_have)
{
    qv_model *m = small_model(QV_ACT_RELU2, QV_ARCH_B158_NEOX, 1); /* bitnet-b1.58 */
    qv_err e;
    cr_assert_eq(load_edited(m, NULL, NULL, 0, NULL, "blk.0.attn_q.scale", &e),
                 QV_ERR_UNSUPPORTED);
    cr_expect(strstr(e.msg, "blk.0.attn_q.scale"), "%s", e.msg);
    qv_model_free(&m);
}
