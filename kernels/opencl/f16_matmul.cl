/* kernels/opencl/f16_matmul.cl — Y(M,N) = X(M,K) . W(N,K)^T, W in IEEE half
 * read with vload_half (no cl_khr_fp16 needed); f32 accumulation.
 *
 * QV_LOCAL = 1: the generic GEMM of common.cl (operands staged in __local).
 * QV_LOCAL = 0: each work-item owns a TY x TX register tile and walks K
 * eight at a time: eight halves of a W row converted at once (vload_half8)
 * and reused across the TY rows, eight floats of an X row (vload8) reused
 * across the TX columns, float8 accumulators summed at the end; the loop
 * is unrolled QV_KT times; the last K % 8 elements one by one. */
__kernel QV_REQD void f16_matmul(__global const float *X,
                                 __global const half *W, __global float *Y,
                                 int M, int N, int K)
{
#if QV_LOCAL
    QV_GEMM_LOCALS
    qv_gemm(X, K, 1, W, QV_B_F16, K, 1, Y, N, M, N, K, 1.0f, 0 QV_GEMM_LARGS);
#else
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int col0 = (int)get_group_id(0) * QV_BN;
    /* edge rows / columns are clamped for reading; their results are not
     * written */
    __global const float *xr[QV_TY];
    __global const half *wr[QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        xr[r] = X + (size_t)min(row0 + ly + r * QV_WG_Y, M - 1) * K;
#pragma unroll
    for (int c = 0; c < QV_TX; c++)
        wr[c] = W + (size_t)min(col0 + lx + c * QV_WG_X, N - 1) * K;
    float8 acc8[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc8[r][c] = (float8)(0.0f);
    int k = 0;
    for (; k + QV_KT * 8 <= K; k += QV_KT * 8) {
#pragma unroll
        for (int u = 0; u < QV_KT; u++) {
            float8 b[QV_TX];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                b[c] = vload_half8(0, wr[c] + k + u * 8);
#pragma unroll
            for (int r = 0; r < QV_TY; r++) {
                float8 a = vload8(0, xr[r] + k + u * 8);
#pragma unroll
                for (int c = 0; c < QV_TX; c++)
                    acc8[r][c] += a * b[c];
            }
        }
    }
    float acc[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++) {
            float8 v = acc8[r][c];
            float4 s4 = v.lo + v.hi;
            float2 s2 = s4.lo + s4.hi;
            acc[r][c] = s2.lo + s2.hi;
        }
    for (; k < K; k++) {
        float b[QV_TX];
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            b[c] = vload_half(k, wr[c]);
#pragma unroll
        for (int r = 0; r < QV_TY; r++) {
            float a = xr[r][k];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                acc[r][c] += a * b[c];
        }
    }
#pragma unroll
    for (int r = 0; r < QV_TY; r++) {
        int i = row0 + ly + r * QV_WG_Y;
#pragma unroll
        for (int c = 0; c < QV_TX; c++) {
            int j = col0 + lx + c * QV_WG_X;
            if (i < M && j < N)
                Y[(size_t)i * N + j] = acc[r][c];
        }
    }
#endif
}
