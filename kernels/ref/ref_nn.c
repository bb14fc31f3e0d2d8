/* kernels/ref/ref_nn.c — the reference (specification) of the transformer
 * kernels declared in kernels/kernel_nn.c and the extra matmuls. Plain
 * loops; reductions in double where a device reduces in float, so the
 * reference is the most accurate answer; element-wise maths in float,
 * written the way the device code writes it. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ternary.h"

#define ATTN_MAX_HD 128
#define REDUCE_CHUNK 1024

void qv_ref_f16_matmul_t(const float *dy, const uint16_t *w, float *dx, int M,
                         int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++)
                acc += (double)dy[(size_t)m * N + n] *
                       (double)qv_f16_to_f32(w[(size_t)n * K + k]);
            dx[(size_t)m * K + k] = (float)acc;
        }
}

void qv_ref_f32_matmul(const float *a, const float *b, float *c, int M, int N,
                       int K, int ta, int tb, int accumulate)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float av = ta ? a[(size_t)k * M + m] : a[(size_t)m * K + k];
                float bv = tb ? b[(size_t)n * K + k] : b[(size_t)k * N + n];
                acc += (double)av * bv;
            }
            float *o = &c[(size_t)m * N + n];
            *o = accumulate ? *o + (float)acc : (float)acc;
        }
}

void qv_ref_embed(const int32_t *ids, const float *e, float *x, int T, int D,
                  int V)
{
    for (int t = 0; t < T; t++) {
        int id = ids[t];
        for (int d = 0; d < D; d++)
            x[(size_t)t * D + d] =
                id >= 0 && id < V ? e[(size_t)id * D + d] : 0.0f;
    }
}

void qv_ref_embed_f16(const int32_t *ids, const uint16_t *e, float *x, int T,
                      int D, int V)
{
    for (int t = 0; t < T; t++) {
        int id = ids[t];
        for (int d = 0; d < D; d++)
            x[(size_t)t * D + d] =
                id >= 0 && id < V ? qv_f16_to_f32(e[(size_t)id * D + d]) : 0.0f;
    }
}

void qv_ref_embed_bwd(const int32_t *ids, const float *dx, float *de, int T,
                      int D, int V)
{
    for (int v = 0; v < V; v++)
        for (int d = 0; d < D; d++) {
            float acc = de[(size_t)v * D + d];
            for (int t = 0; t < T; t++)
                if (ids[t] == v)
                    acc += dx[(size_t)t * D + d];
            de[(size_t)v * D + d] = acc;
        }
}

static float row_rstd(const float *x, int D, float eps)
{
    double ss = 0.0;
    for (int d = 0; d < D; d++)
        ss += (double)x[d] * x[d];
    return (float)(1.0 / sqrt(ss / D + eps));
}

void qv_ref_rmsnorm(const float *x, const float *g, float *y, int T, int D,
                    float eps)
{
    for (int t = 0; t < T; t++) {
        const float *row = x + (size_t)t * D;
        float r = row_rstd(row, D, eps);
        for (int d = 0; d < D; d++)
            y[(size_t)t * D + d] = row[d] * r * g[d];
    }
}

void qv_ref_rmsnorm_bwd(const float *x, const float *g, const float *dy,
                        float *rstd, float *dx, float *dg, int T, int D,
                        float eps)
{
    for (int t = 0; t < T; t++) {
        const float *row = x + (size_t)t * D, *drow = dy + (size_t)t * D;
        float r = row_rstd(row, D, eps);
        rstd[t] = r;
        double dot = 0.0;
        for (int d = 0; d < D; d++)
            dot += (double)(drow[d] * g[d]) * (double)(row[d] * r);
        float mean = (float)(dot / D);
        for (int d = 0; d < D; d++)
            dx[(size_t)t * D + d] +=
                r * (drow[d] * g[d] - row[d] * r * mean);
    }
    for (int d = 0; d < D; d++) {
        double acc = 0.0;
        for (int t = 0; t < T; t++)
            acc += (double)dy[(size_t)t * D + d] * x[(size_t)t * D + d] * rstd[t];
        dg[d] += (float)acc;
    }
}

void qv_ref_rope(float *x, const float *cs, int T, int H, int hd, int S,
                 int sign, int neox)
{
    for (int t = 0; t < T; t++) {
        int p = t % S;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd / 2; i++) {
                float *v = x + (size_t)t * H * hd + (size_t)h * hd;
                float *v0 = neox ? v + i : v + 2 * i;
                float *v1 = neox ? v + i + hd / 2 : v + 2 * i + 1;
                float c = cs[((size_t)p * (hd / 2) + i) * 2];
                float s = (float)sign * cs[((size_t)p * (hd / 2) + i) * 2 + 1];
                float x0 = *v0, x1 = *v1;
                *v0 = x0 * c - x1 * s;
                *v1 = x0 * s + x1 * c;
            }
    }
}

/* Scores of query (t, h) against the keys of its sequence up to t. */
static double score(const float *q, const float *k, int t, int j, int h,
                    int hk, int Hq, int Hkv, int hd, float scale)
{
    const float *qi = q + ((size_t)t * Hq + h) * hd;
    const float *kj = k + ((size_t)j * Hkv + hk) * hd;
    double s = 0.0;
    for (int d = 0; d < hd; d++)
        s += (double)qi[d] * kj[d];
    return s * scale;
}

void qv_ref_attention(const float *q, const float *k, const float *v,
                      float *o, int B, int S, int Hq, int Hkv, int hd,
                      float scale)
{
    int grp = Hq / Hkv;
    double acc[ATTN_MAX_HD];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < S; i++)
            for (int h = 0; h < Hq; h++) {
                int t = b * S + i, hk = h / grp;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++)
                    mx = fmax(mx, score(q, k, t, b * S + j, h, hk, Hq, Hkv, hd, scale));
                for (int d = 0; d < hd; d++)
                    acc[d] = 0.0;
                for (int j = 0; j <= i; j++) {
                    double p = exp(score(q, k, t, b * S + j, h, hk, Hq, Hkv, hd, scale) - mx);
                    sum += p;
                    const float *vj = v + ((size_t)(b * S + j) * Hkv + hk) * hd;
                    for (int d = 0; d < hd; d++)
                        acc[d] += p * vj[d];
                }
                for (int d = 0; d < hd; d++)
                    o[((size_t)t * Hq + h) * hd + d] = (float)(acc[d] / sum);
            }
}

static double dot_do_v(const float *dout, const float *v, int t, int j, int h,
                       int hk, int Hq, int Hkv, int hd)
{
    const float *a = dout + ((size_t)t * Hq + h) * hd;
    const float *b = v + ((size_t)j * Hkv + hk) * hd;
    double s = 0.0;
    for (int d = 0; d < hd; d++)
        s += (double)a[d] * b[d];
    return s;
}

/* Softmax statistics of query (t = b*S + i, h): log-sum-exp of its scores
 * and D = sum_j P[i,j] (dO_i . V_j), in double. */
static void row_stats(const float *q, const float *k, const float *v,
                      const float *dout, int b, int i, int h, int S, int Hq,
                      int Hkv, int hd, float scale, double *lse_out,
                      double *d_out)
{
    int hk = h / (Hq / Hkv), t = b * S + i;
    double mx = -INFINITY, sum = 0.0, D = 0.0;
    for (int j = 0; j <= i; j++)
        mx = fmax(mx, score(q, k, t, b * S + j, h, hk, Hq, Hkv, hd, scale));
    for (int j = 0; j <= i; j++)
        sum += exp(score(q, k, t, b * S + j, h, hk, Hq, Hkv, hd, scale) - mx);
    double lse = mx + log(sum);
    for (int j = 0; j <= i; j++) {
        double p = exp(score(q, k, t, b * S + j, h, hk, Hq, Hkv, hd, scale) - lse);
        D += p * dot_do_v(dout, v, t, b * S + j, h, hk, Hq, Hkv, hd);
    }
    *lse_out = lse;
    *d_out = D;
}

void qv_ref_attention_bwd(const float *q, const float *k, const float *v,
                          const float *dout, float *L, float *Dd, float *dq,
                          float *dk, float *dv, int B, int S, int Hq, int Hkv,
                          int hd, float scale)
{
    int grp = Hq / Hkv;
    /* the statistics in double, kept for stage 1 (recomputed there when
     * there is no memory for them) */
    size_t nrow = (size_t)B * (size_t)S * (size_t)Hq;
    double *lse_d = malloc(nrow * sizeof *lse_d), *dd_d = malloc(nrow * sizeof *dd_d);
    /* stage 0: per query */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < S; i++)
            for (int h = 0; h < Hq; h++) {
                int t = b * S + i, hk = h / grp;
                double lse, D;
                row_stats(q, k, v, dout, b, i, h, S, Hq, Hkv, hd, scale, &lse, &D);
                if (lse_d && dd_d) {
                    lse_d[(size_t)t * Hq + h] = lse;
                    dd_d[(size_t)t * Hq + h] = D;
                }
                L[(size_t)t * Hq + h] = (float)lse;
                Dd[(size_t)t * Hq + h] = (float)D;
                double acc[ATTN_MAX_HD] = {0};
                for (int j = 0; j <= i; j++) {
                    int tj = b * S + j;
                    double p = exp(score(q, k, t, tj, h, hk, Hq, Hkv, hd, scale) - lse);
                    double ds = p * (dot_do_v(dout, v, t, tj, h, hk, Hq, Hkv, hd) - D);
                    const float *kj = k + ((size_t)tj * Hkv + hk) * hd;
                    for (int d = 0; d < hd; d++)
                        acc[d] += ds * kj[d];
                }
                for (int d = 0; d < hd; d++)
                    dq[((size_t)t * Hq + h) * hd + d] = (float)(acc[d] * scale);
            }
    /* stage 1: per key / value head */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < S; j++)
            for (int hk = 0; hk < Hkv; hk++) {
                int tj = b * S + j;
                double ak[ATTN_MAX_HD] = {0}, av[ATTN_MAX_HD] = {0};
                for (int h = hk * grp; h < (hk + 1) * grp; h++)
                    for (int i = j; i < S; i++) {
                        int t = b * S + i;
                        double lse, D;
                        if (lse_d && dd_d) {
                            lse = lse_d[(size_t)t * Hq + h];
                            D = dd_d[(size_t)t * Hq + h];
                        } else {
                            row_stats(q, k, v, dout, b, i, h, S, Hq, Hkv, hd,
                                      scale, &lse, &D);
                        }
                        double p = exp(score(q, k, t, tj, h, hk, Hq, Hkv, hd, scale) - lse);
                        double ds = p * (dot_do_v(dout, v, t, tj, h, hk, Hq, Hkv, hd) - D);
                        const float *qi = q + ((size_t)t * Hq + h) * hd;
                        const float *di = dout + ((size_t)t * Hq + h) * hd;
                        for (int d = 0; d < hd; d++) {
                            av[d] += p * di[d];
                            ak[d] += ds * qi[d];
                        }
                    }
                for (int d = 0; d < hd; d++) {
                    dv[((size_t)tj * Hkv + hk) * hd + d] = (float)av[d];
                    dk[((size_t)tj * Hkv + hk) * hd + d] = (float)(ak[d] * scale);
                }
            }
    free(lse_d);
    free(dd_d);
}

static float act_f(float g, int act)
{
    if (act)
        return g > 0.0f ? g * g : 0.0f;
    return g / (1.0f + expf(-g));
}

static float act_df(float g, int act)
{
    if (act)
        return g > 0.0f ? 2.0f * g : 0.0f;
    float s = 1.0f / (1.0f + expf(-g));
    return s * (1.0f + g * (1.0f - s));
}

void qv_ref_swiglu(const float *g, const float *u, float *h, int n, int act)
{
    for (int i = 0; i < n; i++)
        h[i] = act_f(g[i], act) * u[i];
}

void qv_ref_swiglu_bwd(const float *g, const float *u, const float *dh,
                       float *dg, float *du, int n, int act)
{
    for (int i = 0; i < n; i++) {
        dg[i] = dh[i] * u[i] * act_df(g[i], act);
        du[i] = dh[i] * act_f(g[i], act);
    }
}

void qv_ref_cols_copy(float *a, float *b, int T, int W, int Vw, int off, int dir)
{
    for (int t = 0; t < T; t++)
        for (int j = 0; j < W; j++) {
            float *pa = a + (size_t)t * W + j, *pb = b + (size_t)t * Vw + off + j;
            if (dir)
                *pa = *pb;
            else
                *pb = *pa;
        }
}

void qv_ref_axpby(const float *x, float *y, int n, float alpha, float beta)
{
    for (int i = 0; i < n; i++)
        y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
}

void qv_ref_fill(float *y, int n, float value)
{
    for (int i = 0; i < n; i++)
        y[i] = value;
}

void qv_ref_cross_entropy(const float *logits, const int32_t *targets,
                          float *loss, float *dlogits, int T, int V,
                          float gscale)
{
    for (int t = 0; t < T; t++) {
        const float *z = logits + (size_t)t * V;
        float *dz = dlogits + (size_t)t * V;
        int y = targets[t];
        if (y < 0 || y >= V) {
            loss[t] = 0.0f;
            for (int v = 0; v < V; v++)
                dz[v] = 0.0f;
            continue;
        }
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++)
            sum += exp((double)z[v] - mx);
        double lse = mx + log(sum);
        loss[t] = (float)(lse - z[y]);
        for (int v = 0; v < V; v++) {
            double p = exp((double)z[v] - lse);
            dz[v] = (float)(gscale * (p - (v == y ? 1.0 : 0.0)));
        }
    }
}

void qv_ref_adamw(float *p, const float *g, float *m1, float *m2, int n,
                  float lr, float beta1, float beta2, float eps, float wd,
                  float bc1, float bc2, float gscale)
{
    for (int i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        m1[i] = beta1 * m1[i] + (1.0f - beta1) * gi;
        m2[i] = beta2 * m2[i] + (1.0f - beta2) * gi * gi;
        float mh = m1[i] / bc1, vh = m2[i] / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

void qv_ref_reduce_partial(const float *x, float *out, int n, int mode)
{
    int chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    for (int c = 0; c < chunks; c++) {
        double acc = 0.0;
        int end = (c + 1) * REDUCE_CHUNK < n ? (c + 1) * REDUCE_CHUNK : n;
        for (int i = c * REDUCE_CHUNK; i < end; i++)
            acc += mode ? fabs((double)x[i]) : (double)x[i] * x[i];
        out[c] = (float)acc;
    }
}

void qv_ref_ternary_pack(const float *w, uint32_t *p, int N, int K,
                         float inv_scale)
{
    int words = qv_ternary_row_words(K);
    for (int n = 0; n < N; n++)
        for (int wi = 0; wi < words; wi++) {
            uint32_t word = 0;
            for (int j = 0; j < 16; j++) {
                int k = wi * 16 + j;
                uint32_t code = 1;
                if (k < K) {
                    float v = w[(size_t)n * K + k] * inv_scale;
                    float r = v < 0.0f ? -floorf(-v + 0.5f) : floorf(v + 0.5f);
                    r = fminf(fmaxf(r, -1.0f), 1.0f);
                    code = (uint32_t)((int)r + 1);
                }
                word |= code << (2 * j);
            }
            p[(size_t)n * words + wi] = word;
        }
}

/* IEEE half / bfloat16 rounding of an f32, to nearest, ties to even (as
 * ggml's FP32_TO_FP16 / FP32_TO_BF16 then back). */
static float round_f16(float x)
{
    uint32_t u, a, sign;
    memcpy(&u, &x, 4);
    a = u & 0x7fffffffu;
    sign = u & 0x80000000u;
    if (a >= 0x7f800000u)
        return x;
    if (a >= 0x477ff000u)
        a = 0x7f800000u;
    else if (a < 0x38800000u)
        return copysignf(rintf(fabsf(x) * 16777216.0f) * (1.0f / 16777216.0f), x);
    else
        a = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    u = sign | a;
    memcpy(&x, &u, 4);
    return x;
}

static float round_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u |= 0x00400000u;
    else
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

void qv_ref_act_round(float *X, int T, int K, int mode)
{
    for (int t = 0; t < T; t++)
        for (int j0 = 0; j0 < K; j0 += 256) {
            float *x = X + (size_t)t * K;
            int j1 = K < j0 + 256 ? K : j0 + 256;
            if (mode == 1 || mode == 2) {
                for (int j = j0; j < j1; j++)
                    x[j] = mode == 1 ? round_f16(x[j]) : round_bf16(x[j]);
                continue;
            }
            if (mode != 3)
                continue;
            /* ggml's quantize_row_q8_K_ref, then the value each code stands
             * for (llama.cpp multiplies the integer sums by 1 / iscale) */
            float amax = 0.0f, mx = 0.0f;
            for (int j = j0; j < j1; j++)
                if (fabsf(x[j]) > amax) {
                    amax = fabsf(x[j]);
                    mx = x[j];
                }
            if (amax == 0.0f) {
                for (int j = j0; j < j1; j++)
                    x[j] = 0.0f;
                continue;
            }
            const float iscale = -127.0f / mx, d = 1.0f / iscale;
            for (int j = j0; j < j1; j++) {
                float q = rintf(iscale * x[j]);
                x[j] = (q < 127.0f ? q : 127.0f) * d;
            }
        }
}
