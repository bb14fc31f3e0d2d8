/* kernels/opencl/common.cl — shared prelude of every qvac OpenCL program
 * (prepended to opencl/<kernel>.cl by the backend). Owns the work-group
 * attribute and the one generic register-tiled GEMM that f16_matmul,
 * ternary_matmul_t and the LoRA stages call with different strides.
 *
 * Parameters arrive as -DQV_<NAME>=<value> (see kernels/kernel.c):
 *   QV_WG_X, QV_WG_Y  work-group shape (x = output columns)
 *   QV_TX, QV_TY      outputs per work-item along x / y (register tile)
 *   QV_LOCAL          0: operands from global memory, 1: staged in __local
 *   QV_KT             reduction step (float GEMM: QV_KT*8 elements)
 * Work-item (lx, ly) of group (gx, gy) owns output rows
 *   gy*BM + ly + r*WG_Y (r < TY) and columns gx*BN + lx + c*WG_X (c < TX),
 * so neighbouring work-items touch neighbouring columns. */

#define QV_REQD __attribute__((reqd_work_group_size(QV_WG_X, QV_WG_Y, 1)))

#ifdef QV_TX

#define QV_BM (QV_WG_Y * QV_TY) /* output rows of one work-group */
#define QV_BN (QV_WG_X * QV_TX) /* output columns of one work-group */
#define QV_KD (QV_KT * 8)       /* float reduction step */

/* How the B operand is stored. */
#define QV_B_F32 0  /* B(j,k) = ((float*)B)[j*sb_j + k*sb_k] */
#define QV_B_F16 1  /* the same, IEEE half read with vload_half */
#define QV_B_TERN 2 /* packed ternary W (rows k, sb_k words each):
                       B(j,k) = weight j of row k */

inline float qv_ld_b(__global const void *B, int mode, int j, int k, int sb_j,
                     int sb_k)
{
    if (mode == QV_B_F16)
        return vload_half(j * sb_j + k * sb_k, (__global const half *)B);
    if (mode == QV_B_TERN) {
        uint w = ((__global const uint *)B)[k * sb_k + (j >> 4)];
        return (float)((int)((w >> ((j & 15) * 2)) & 3u) - 1);
    }
    return ((__global const float *)B)[j * sb_j + k * sb_k];
}

#if QV_LOCAL
#define QV_GEMM_LOCALS                                                         \
    __local float qv_As[QV_KD * QV_BM];                                        \
    __local float qv_Bs[QV_KD * QV_BN];
#define QV_GEMM_LARGS , qv_As, qv_Bs
#else
#define QV_GEMM_LOCALS
#define QV_GEMM_LARGS
#endif

/* C(i,j) [+]= alpha * sum_k A(i,k) * B(j,k) for i < Mo, j < No, k < Kr,
 * with A(i,k) = A[i*sa_i + k*sa_k] and B as b_mode says; C row stride ldc.
 * f32 accumulation. Called with literal strides, so after inlining the
 * index arithmetic is specialised per stage. */
inline void qv_gemm(__global const float *A, int sa_i, int sa_k,
                    __global const void *B, int b_mode, int sb_j, int sb_k,
                    __global float *C, int ldc, int Mo, int No, int Kr,
                    float alpha, int accumulate
#if QV_LOCAL
                    , __local float *As, __local float *Bs
#endif
                    )
{
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int col0 = (int)get_group_id(0) * QV_BN;
    float acc[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc[r][c] = 0.0f;

#if QV_LOCAL
    const int nthr = QV_WG_X * QV_WG_Y, tid = ly * QV_WG_X + lx;
    for (int k0 = 0; k0 < Kr; k0 += QV_KD) {
        /* Stage A (BM x KD) and B (BN x KD), zero outside the matrices;
         * consecutive work-items read consecutive addresses. */
        for (int e = tid; e < QV_KD * QV_BM; e += nthr) {
            int r, kk;
            if (sa_k == 1) { kk = e % QV_KD; r = e / QV_KD; }
            else { r = e % QV_BM; kk = e / QV_BM; }
            int gi = row0 + r, gk = k0 + kk;
            As[kk * QV_BM + r] =
                (gi < Mo && gk < Kr) ? A[gi * sa_i + gk * sa_k] : 0.0f;
        }
        for (int e = tid; e < QV_KD * QV_BN; e += nthr) {
            int c, kk;
            if (sb_k == 1) { kk = e % QV_KD; c = e / QV_KD; }
            else { c = e % QV_BN; kk = e / QV_BN; }
            int gj = col0 + c, gk = k0 + kk;
            Bs[kk * QV_BN + c] = (gj < No && gk < Kr)
                                     ? qv_ld_b(B, b_mode, gj, gk, sb_j, sb_k)
                                     : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (int kk = 0; kk < QV_KD; kk++) {
            float a[QV_TY], b[QV_TX];
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
                a[r] = As[kk * QV_BM + ly + r * QV_WG_Y];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                b[c] = Bs[kk * QV_BN + lx + c * QV_WG_X];
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
#pragma unroll
                for (int c = 0; c < QV_TX; c++)
                    acc[r][c] += a[r] * b[c];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    /* Rows / columns past the edge are clamped for reading (their results
     * are dropped), so the inner loop has no bounds checks. */
    int ia[QV_TY], jb[QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        ia[r] = min(row0 + ly + r * QV_WG_Y, Mo - 1) * sa_i;
#pragma unroll
    for (int c = 0; c < QV_TX; c++)
        jb[c] = min(col0 + lx + c * QV_WG_X, No - 1);
    int k = 0;
    for (; k + QV_KD <= Kr; k += QV_KD) {
#pragma unroll
        for (int u = 0; u < QV_KD; u++) {
            float a[QV_TY], b[QV_TX];
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
                a[r] = A[ia[r] + (k + u) * sa_k];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                b[c] = qv_ld_b(B, b_mode, jb[c], k + u, sb_j, sb_k);
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
#pragma unroll
                for (int c = 0; c < QV_TX; c++)
                    acc[r][c] += a[r] * b[c];
        }
    }
    for (; k < Kr; k++) {
        float a[QV_TY], b[QV_TX];
#pragma unroll
        for (int r = 0; r < QV_TY; r++)
            a[r] = A[ia[r] + k * sa_k];
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            b[c] = qv_ld_b(B, b_mode, jb[c], k, sb_j, sb_k);
#pragma unroll
        for (int r = 0; r < QV_TY; r++)
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                acc[r][c] += a[r] * b[c];
    }
#endif

#pragma unroll
    for (int r = 0; r < QV_TY; r++) {
        int i = row0 + ly + r * QV_WG_Y;
#pragma unroll
        for (int c = 0; c < QV_TX; c++) {
            int j = col0 + lx + c * QV_WG_X;
            if (i < Mo && j < No) {
                float v = alpha * acc[r][c];
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + v : v;
            }
        }
    }
}

#endif /* QV_TX */
