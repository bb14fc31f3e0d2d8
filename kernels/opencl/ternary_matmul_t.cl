/* kernels/opencl/ternary_matmul_t.cl — dX(M,K) = w_scale * dY(M,N) . W(N,K)
 * with W packed ternary (16 weights a word) read transposed: B(k,n) is
 * weight k of packed row n. f32 accumulation.
 * QV_LOCAL = 1: common.cl's generic GEMM (operands staged in __local).
 * QV_LOCAL = 0: common.cl's column-vector GEMM: each work-item decodes TX
 * consecutive weights of a packed row with one vector shift and
 * multiplies them by TY broadcast gradients, row n of W after row n. */
__kernel QV_REQD void ternary_matmul_t(__global const float *dY,
                                       __global const uint *W,
                                       __global float *dX, int M, int N,
                                       int K, float w_scale)
{
    const int KW = (K + 15) / 16;
#if QV_LOCAL
    QV_GEMM_LOCALS
    qv_gemm(dY, N, 1, W, QV_B_TERN, 0, KW, dX, K, M, K, N, w_scale,
            0 QV_GEMM_LARGS);
#else
    qv_gemm_cv(dY, N, 1, W, QV_B_TERN, KW, dX, K, M, K, N, w_scale, 0);
#endif
}
