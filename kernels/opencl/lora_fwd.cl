/* kernels/opencl/lora_fwd.cl — LoRA forward in two stages:
 *   lora_fwd_h: H(M,R)  = X(M,K) . A(R,K)^T
 *   lora_fwd_y: Y(M,N) += scale * H(M,R) . B(N,R)^T
 * f32 accumulation. QV_LOCAL = 1: common.cl's generic GEMM; QV_LOCAL = 0:
 * its dot GEMM (both operands of both stages run along the reduction). */
__kernel QV_REQD void lora_fwd_h(__global const float *X,
                                 __global const float *A,
                                 __global const float *B, __global float *H,
                                 __global float *Y, int M, int N, int K,
                                 int R, float scale)
{
    QV_GEMM_LOCALS
    (void)B;
    (void)Y;
    (void)N;
    (void)scale;
#if QV_LOCAL
    qv_gemm(X, K, 1, A, QV_B_F32, K, 1, H, R, M, R, K, 1.0f, 0 QV_GEMM_LARGS);
#else
    qv_gemm_dot(X, K, A, QV_B_F32, K, H, R, M, R, K, 1.0f, 0);
#endif
}

__kernel QV_REQD void lora_fwd_y(__global const float *X,
                                 __global const float *A,
                                 __global const float *B, __global float *H,
                                 __global float *Y, int M, int N, int K,
                                 int R, float scale)
{
    QV_GEMM_LOCALS
    (void)X;
    (void)A;
    (void)K;
#if QV_LOCAL
    qv_gemm(H, R, 1, B, QV_B_F32, R, 1, Y, N, M, N, R, scale, 1 QV_GEMM_LARGS);
#else
    qv_gemm_dot(H, R, B, QV_B_F32, R, Y, N, M, N, R, scale, 1);
#endif
}
