/* kernels/opencl/f16_matmul_t.cl — dX(M,K) = dY(M,N) . W(N,K), W in IEEE
 * half read transposed with vload_half: B(k,n) = W[n*K + k]. f32
 * accumulation through common.cl's GEMM. */
__kernel QV_REQD void f16_matmul_t(__global const float *dY,
                                   __global const half *W,
                                   __global float *dX, int M, int N, int K)
{
    QV_GEMM_LOCALS
    qv_gemm(dY, N, 1, W, QV_B_F16, 1, K, dX, K, M, K, N, 1.0f,
            0 QV_GEMM_LARGS);
}
