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

#endif
