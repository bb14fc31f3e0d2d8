/* kernels/ref/ref_kernels.c — see ref_kernels.h. Obvious loops; float
 * reductions accumulate in double so the reference is the most accurate
 * result, and devices are compared against it with a tolerance. */
#include "kernels/ref/ref_kernels.h"

#include <math.h>
#include <stddef.h>

#include "common/half.h"
#include "kernels/ternary.h"

void qv_ref_quantize_act(const float *x, int8_t *xq, float *x_scale, int M,
                         int K)
{
    for (int m = 0; m < M; m++) {
        const float *row = x + (size_t)m * K;
        float amax = 0.0f;
        for (int k = 0; k < K; k++)
            amax = fmaxf(amax, fabsf(row[k]));
        amax = fmaxf(amax, 1e-5f);
        float s = 127.0f / amax;
        for (int k = 0; k < K; k++) {
            float v = row[k] * s;
            /* round half away from zero, as OpenCL round() */
            float r = v < 0.0f ? -floorf(-v + 0.5f) : floorf(v + 0.5f);
            r = fminf(fmaxf(r, -128.0f), 127.0f);
            xq[(size_t)m * K + k] = (int8_t)r;
        }
        x_scale[m] = s;
    }
}

void qv_ref_ternary_matmul(const int8_t *xq, const float *x_scale,
                           const uint32_t *w, float *y, int M, int N, int K,
                           float w_scale)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int32_t)xq[(size_t)m * K + k] * qv_ternary_get(w, K, n, k);
            y[(size_t)m * N + n] = (float)acc / x_scale[m] * w_scale;
        }
}

void qv_ref_ternary_matmul_t(const float *dy, const uint32_t *w, float *dx,
                             int M, int N, int K, float w_scale)
{
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++)
                acc += (double)dy[(size_t)m * N + n] * qv_ternary_get(w, K, n, k);
            dx[(size_t)m * K + k] = (float)(acc * w_scale);
        }
}

void qv_ref_f16_matmul(const float *x, const uint16_t *w, float *y, int M,
                       int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)x[(size_t)m * K + k] *
                       (double)qv_f16_to_f32(w[(size_t)n * K + k]);
            y[(size_t)m * N + n] = (float)acc;
        }
}

void qv_ref_lora_fwd(const float *x, const float *a, const float *b, float *h,
                     float *y, int M, int N, int K, int R, float scale)
{
    for (int m = 0; m < M; m++)
        for (int j = 0; j < R; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)x[(size_t)m * K + k] * a[(size_t)j * K + k];
            h[(size_t)m * R + j] = (float)acc;
        }
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int j = 0; j < R; j++)
                acc += (double)h[(size_t)m * R + j] * b[(size_t)n * R + j];
            y[(size_t)m * N + n] += (float)(scale * acc);
        }
}

void qv_ref_lora_bwd(const float *x, const float *a, const float *b,
                     const float *h, const float *dy, float *dh, float *da,
                     float *db, float *dx, int M, int N, int K, int R,
                     float scale)
{
    /* dh (M,R) = scale * dy (M,N) . b (N,R) */
    for (int m = 0; m < M; m++)
        for (int j = 0; j < R; j++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++)
                acc += (double)dy[(size_t)m * N + n] * b[(size_t)n * R + j];
            dh[(size_t)m * R + j] = (float)(scale * acc);
        }
    /* db (N,R) = scale * dy^T (N,M) . h (M,R) */
    for (int n = 0; n < N; n++)
        for (int j = 0; j < R; j++) {
            double acc = 0.0;
            for (int m = 0; m < M; m++)
                acc += (double)dy[(size_t)m * N + n] * h[(size_t)m * R + j];
            db[(size_t)n * R + j] = (float)(scale * acc);
        }
    /* da (R,K) = dh^T (R,M) . x (M,K) */
    for (int j = 0; j < R; j++)
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int m = 0; m < M; m++)
                acc += (double)dh[(size_t)m * R + j] * x[(size_t)m * K + k];
            da[(size_t)j * K + k] = (float)acc;
        }
    /* dx (M,K) += dh (M,R) . a (R,K) */
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double acc = 0.0;
            for (int j = 0; j < R; j++)
                acc += (double)dh[(size_t)m * R + j] * a[(size_t)j * K + k];
            dx[(size_t)m * K + k] += (float)acc;
        }
}
