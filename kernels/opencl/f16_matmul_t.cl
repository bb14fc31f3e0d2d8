/* kernels/opencl/f16_matmul_t.cl — dX(M,K) = dY(M,N) . W(N,K), W in IEEE
 * half read transposed: B(k,n) = W[n*K + k]. f32 accumulation.
 * QV_LOCAL = 1: common.cl's generic GEMM (operands staged in __local).
 * QV_LOCAL = 0: common.cl's column-vector GEMM: each work-item converts TX
 * consecutive halves of a W row at once (vload_halfN) and multiplies them
 * by TY broadcast gradients, row n of W after row n. */
__kernel QV_REQD void f16_matmul_t(__global const float *dY,
                                   __global const half *W,
                                   __global float *dX, int M, int N, int K)
{
#if QV_LOCAL
    QV_GEMM_LOCALS
    qv_gemm(dY, N, 1, W, QV_B_F16, 1, K, dX, K, M, K, N, 1.0f,
            0 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dY, N, 1, W, QV_B_F16, K, dX, K, M, K, N, 1.0f, 0);
#endif
}
