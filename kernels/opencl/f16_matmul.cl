/* kernels/opencl/f16_matmul.cl — Y(M,N) = X(M,K) . W(N,K)^T, W in IEEE half
 * read with vload_half (no cl_khr_fp16 needed); f32 accumulation through the
 * generic GEMM of common.cl. */
__kernel QV_REQD void f16_matmul(__global const float *X,
                                 __global const half *W, __global float *Y,
                                 int M, int N, int K)
{
    QV_GEMM_LOCALS
    qv_gemm(X, K, 1, W, QV_B_F16, K, 1, Y, N, M, N, K, 1.0f, 0 QV_GEMM_LARGS);
}
