/* kernels/ref/ref_kernels.h — the specification of every kernel, in plain,
 * single-threaded C over host arrays. Shapes are named next to each pointer;
 * matrices are row-major. The reference backend runs these; the tests
 * compare every device against them. */
#ifndef QV_REF_KERNELS_H
#define QV_REF_KERNELS_H

#include <stdint.h>

/* x (M,K) f32 -> xq (M,K) int8, x_scale (M): s = 127 / max(max|x|, 1e-5),
 * q = clamp(round_half_away(x * s), -128, 127). */
void qv_ref_quantize_act(const float *x, int8_t *xq, float *x_scale, int M,
                         int K);

/* y (M,N) = (float)(sum_k xq[m,k] * w[n,k]) / x_scale[m] * w_scale, the sum
 * in int32; w packed (N, ceil(K/16)) words (kernels/ternary.h). */
void qv_ref_ternary_matmul(const int8_t *xq, const float *x_scale,
                           const uint32_t *w, float *y, int M, int N, int K,
                           float w_scale);

/* dx (M,K) = w_scale * sum_n dy[m,n] * w[n,k]. */
void qv_ref_ternary_matmul_t(const float *dy, const uint32_t *w, float *dx,
                             int M, int N, int K, float w_scale);

/* y (M,N) = x (M,K) . w (N,K)^T, w IEEE half. */
void qv_ref_f16_matmul(const float *x, const uint16_t *w, float *y, int M,
                       int N, int K);

/* h (M,R) = x (M,K) . a (R,K)^T ; y (M,N) += scale * h . b (N,R)^T */
void qv_ref_lora_fwd(const float *x, const float *a, const float *b, float *h,
                     float *y, int M, int N, int K, int R, float scale);

/* dh (M,R) = scale * dy . b ; db (N,R) = scale * dy^T . h ;
 * da (R,K) = dh^T . x ; dx (M,K) += dh . a */
void qv_ref_lora_bwd(const float *x, const float *a, const float *b,
                     const float *h, const float *dy, float *dh, float *da,
                     float *db, float *dx, int M, int N, int K, int R,
                     float scale);

/* ---- kernels/ref/ref_nn.c: see kernels/kernel_nn.c for each contract ---- */

/* dx (M,K) = dy (M,N) . w (N,K), w IEEE half. */
void qv_ref_f16_matmul_t(const float *dy, const uint16_t *w, float *dx, int M,
                         int N, int K);
/* c (M,N) [+]= op(a) . op(b); a (M,K) or (K,M) if ta; b (K,N) or (N,K) if tb */
void qv_ref_f32_matmul(const float *a, const float *b, float *c, int M, int N,
                       int K, int ta, int tb, int accumulate);
void qv_ref_embed(const int32_t *ids, const float *e, float *x, int T, int D,
                  int V);
void qv_ref_embed_f16(const int32_t *ids, const uint16_t *e, float *x, int T,
                      int D, int V);
void qv_ref_embed_bwd(const int32_t *ids, const float *dx, float *de, int T,
                      int D, int V);
void qv_ref_rmsnorm(const float *x, const float *g, float *y, int T, int D,
                    float eps);
void qv_ref_rmsnorm_bwd(const float *x, const float *g, const float *dy,
                        float *rstd, float *dx, float *dg, int T, int D,
                        float eps);
void qv_ref_rope(float *x, const float *cs, int T, int H, int hd, int S,
                 int sign, int neox);
void qv_ref_attention(const float *q, const float *k, const float *v,
                      float *o, int B, int S, int Hq, int Hkv, int hd,
                      float scale);
void qv_ref_attention_bwd(const float *q, const float *k, const float *v,
                          const float *dout, float *L, float *Dd, float *dq,
                          float *dk, float *dv, int B, int S, int Hq, int Hkv,
                          int hd, float scale);
void qv_ref_swiglu(const float *g, const float *u, float *h, int n, int act);
void qv_ref_swiglu_bwd(const float *g, const float *u, const float *dh,
                       float *dg, float *du, int n, int act);
void qv_ref_axpby(const float *x, float *y, int n, float alpha, float beta);
void qv_ref_cols_copy(float *a, float *b, int T, int W, int Vw, int off, int dir);
void qv_ref_fill(float *y, int n, float value);
/* llama.cpp CPU activation rounding in place (kernels/kernel_nn.c, act_round) */
void qv_ref_act_round(float *X, int T, int K, int mode);
void qv_ref_cross_entropy(const float *logits, const int32_t *targets,
                          float *loss, float *dlogits, int T, int V,
                          float gscale);
void qv_ref_adamw(float *p, const float *g, float *m1, float *m2, int n,
                  float lr, float beta1, float beta2, float eps, float wd,
                  float bc1, float bc2, float gscale);
void qv_ref_reduce_partial(const float *x, float *out, int n, int mode);
void qv_ref_ternary_pack(const float *w, uint32_t *p, int N, int K,
                         float inv_scale);

#endif
