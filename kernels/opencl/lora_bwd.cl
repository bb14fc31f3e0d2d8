/* kernels/opencl/lora_bwd.cl — LoRA backward in four stages (in-order queue:
 * dA and dX read the dH of stage 0):
 *   lora_bwd_dh: dH(M,R)  = scale * dY(M,N) . B(N,R)
 *   lora_bwd_db: dB(N,R)  = scale * dY^T(N,M) . H(M,R)
 *   lora_bwd_da: dA(R,K)  = dH^T(R,M) . X(M,K)
 *   lora_bwd_dx: dX(M,K) += dH(M,R) . A(R,K)
 * each one call of common.cl's GEMM with its strides (QV_LOCAL = 1), or of
 * its column-vector GEMM (QV_LOCAL = 0: every stage's second operand runs
 * along the output's columns). */
#define QV_LORA_BWD_ARGS                                                       \
    __global const float *X, __global const float *A,                          \
        __global const float *B, __global const float *H,                      \
        __global const float *dY, __global float *dH, __global float *dA,      \
        __global float *dB, __global float *dX, int M, int N, int K, int R,    \
        float scale

__kernel QV_REQD void lora_bwd_dh(QV_LORA_BWD_ARGS)
{
    QV_GEMM_LOCALS
#if QV_LOCAL
    qv_gemm(dY, N, 1, B, QV_B_F32, 1, R, dH, R, M, R, N, scale,
            0 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dY, N, 1, B, QV_B_F32, R, dH, R, M, R, N, scale, 0);
#endif
}

__kernel QV_REQD void lora_bwd_db(QV_LORA_BWD_ARGS)
{
    QV_GEMM_LOCALS
#if QV_LOCAL
    qv_gemm(dY, 1, N, H, QV_B_F32, 1, R, dB, R, N, R, M, scale,
            0 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dY, 1, N, H, QV_B_F32, R, dB, R, N, R, M, scale, 0);
#endif
}

__kernel QV_REQD void lora_bwd_da(QV_LORA_BWD_ARGS)
{
    QV_GEMM_LOCALS
#if QV_LOCAL
    qv_gemm(dH, 1, R, X, QV_B_F32, 1, K, dA, K, R, K, M, 1.0f,
            0 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dH, 1, R, X, QV_B_F32, K, dA, K, R, K, M, 1.0f, 0);
#endif
}

__kernel QV_REQD void lora_bwd_dx(QV_LORA_BWD_ARGS)
{
    QV_GEMM_LOCALS
#if QV_LOCAL
    qv_gemm(dH, R, 1, A, QV_B_F32, 1, K, dX, K, M, K, R, 1.0f,
            1 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dH, R, 1, A, QV_B_F32, K, dX, K, M, K, R, 1.0f, 1);
#endif
}
