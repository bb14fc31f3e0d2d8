/* kernels/opencl/f16_matmul.cl — Y(M,N) = X(M,K) . W(N,K)^T, W in IEEE half
 * read with vload_half (no cl_khr_fp16 needed); f32 accumulation.
 *
 * QV_LOCAL = 1: the generic GEMM of common.cl (operands staged in __local).
 * QV_LOCAL = 0: common.cl's dot GEMM: eight halves of a W row converted at
 * once (vload_half8) and reused across the TY rows, eight floats of an X
 * row (vload8) across the TX columns, float8 accumulators. */
__kernel QV_REQD void f16_matmul(__global const float *X,
                                 __global const half *W, __global float *Y,
                                 int M, int N, int K)
{
#if QV_LOCAL
    QV_GEMM_LOCALS
    qv_gemm(X, K, 1, W, QV_B_F16, K, 1, Y, N, M, N, K, 1.0f, 0 QV_GEMM_LARGS);
#else
    qv_gemm_dot(X, K, W, QV_B_F16, K, Y, N, M, N, K, 1.0f, 0);
#endif
}
