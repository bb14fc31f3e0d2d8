/* kernels/opencl/lora_fwd.cl — LoRA forward in two stages:
 *   lora_fwd_h: H(M,R)  = X(M,K) . A(R,K)^T
 *   lora_fwd_y: Y(M,N) += scale * H(M,R) . B(N,R)^T
 * both through common.cl's GEMM; f32 accumulation. */
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
    qv_gemm(X, K, 1, A, QV_B_F32, K, 1, H, R, M, R, K, 1.0f, 0 QV_GEMM_LARGS);
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
    qv_gemm(H, R, 1, B, QV_B_F32, R, 1, Y, N, M, N, R, scale, 1 QV_GEMM_LARGS);
}
