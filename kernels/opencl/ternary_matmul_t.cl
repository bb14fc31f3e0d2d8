/* kernels/opencl/ternary_matmul_t.cl — dX(M,K) = w_scale * dY(M,N) . W(N,K)
 * with W packed ternary (16 weights a word) read transposed: B(k,n) is
 * weight k of packed row n. f32 accumulation through common.cl's GEMM. */
__kernel QV_REQD void ternary_matmul_t(__global const float *dY,
                                       __global const uint *W,
                                       __global float *dX, int M, int N,
                                       int K, float w_scale)
{
    QV_GEMM_LOCALS
    const int KW = (K + 15) / 16;
    qv_gemm(dY, N, 1, W, QV_B_TERN, 0, KW, dX, K, M, K, N, w_scale,
            0 QV_GEMM_LARGS);
}
