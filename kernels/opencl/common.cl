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

/* The sum of a vector's lanes, halving (the float16 form also serves
 * ternary_matmul's integer sums in float lanes). */
inline float qv_hsum8(float8 v)
{
    float4 s4 = v.lo + v.hi;
    float2 s2 = s4.lo + s4.hi;
    return s2.lo + s2.hi;
}
inline float qv_hsum16(float16 v) { return qv_hsum8(v.lo + v.hi); }

/* Writes (or adds) alpha * acc of the work-item's TY x TX tile of the
 * generic and dot GEMMs (rows row0 + ly + r*WG_Y, columns col0 + lx +
 * c*WG_X), dropping what lies past Mo x No. */
inline void qv_store_tile(float acc[QV_TY][QV_TX], __global float *C, int ldc,
                          int Mo, int No, float alpha, int accumulate)
{
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int col0 = (int)get_group_id(0) * QV_BN;
#pragma unroll
    for (int r = 0; r < QV_TY; r++) {
        int i = row0 + ly + r * QV_WG_Y;
#pragma unroll
        for (int c = 0; c < QV_TX; c++) {
            int j = col0 + lx + c * QV_WG_X;
            if (i < Mo && j < No) {
                float v = alpha * acc[r][c];
                __global float *cp = C + (size_t)i * ldc + j;
                *cp = accumulate ? *cp + v : v;
            }
        }
    }
}

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
    qv_store_tile(acc, C, ldc, Mo, No, alpha, accumulate);
}

/* ---- column-vector GEMM (LOCAL = 0 of the transposed and NN stages) ----
 * C(i, j) [+]= alpha * sum_k A(i,k) * B(k,j) where B's rows are contiguous
 * along j: B(k, j) = B[k*ldb + j] (f32 / half) or weight j of packed row k
 * (ternary, ldb words a row). Work-item (lx, ly) owns rows
 * row0 + ly + r*WG_Y (r < TY) and the TX *consecutive* columns
 * col0 + lx*TX .. + TX-1 (the work-group still covers BM x BN, so the grid
 * is the generic GEMM's): per k, TY scalars of A broadcast against one
 * TX-wide vector of B (vload / vload_half / one packed word decoded with a
 * vector shift), TY vector accumulators. TX divides 16, so a ternary
 * work-item's columns lie in one packed word. A work-item whose columns
 * cross No takes the scalar loop. */
#if QV_TX == 1
#define QV_VF float
#define QV_VU uint
#define QV_VLDF(p) (*(p))
#define QV_VLDH(p) vload_half(0, (p))
#define QV_VCVT(x) convert_float(x)
#define QV_VSH ((uint)(0u))
#define QV_VST(v, p) ((p)[0] = (v))
#elif QV_TX == 2
#define QV_VF float2
#define QV_VU uint2
#define QV_VLDF(p) vload2(0, (p))
#define QV_VLDH(p) vload_half2(0, (p))
#define QV_VCVT(x) convert_float2(x)
#define QV_VSH ((uint2)(0u, 2u))
#define QV_VST(v, p) vstore2((v), 0, (p))
#elif QV_TX == 4
#define QV_VF float4
#define QV_VU uint4
#define QV_VLDF(p) vload4(0, (p))
#define QV_VLDH(p) vload_half4(0, (p))
#define QV_VCVT(x) convert_float4(x)
#define QV_VSH ((uint4)(0u, 2u, 4u, 6u))
#define QV_VST(v, p) vstore4((v), 0, (p))
#elif QV_TX == 8
#define QV_VF float8
#define QV_VU uint8
#define QV_VLDF(p) vload8(0, (p))
#define QV_VLDH(p) vload_half8(0, (p))
#define QV_VCVT(x) convert_float8(x)
#define QV_VSH ((uint8)(0u, 2u, 4u, 6u, 8u, 10u, 12u, 14u))
#define QV_VST(v, p) vstore8((v), 0, (p))
#elif QV_TX == 16
#define QV_VF float16
#define QV_VU uint16
#define QV_VLDF(p) vload16(0, (p))
#define QV_VLDH(p) vload_half16(0, (p))
#define QV_VCVT(x) convert_float16(x)
#define QV_VSH ((uint16)(0u, 2u, 4u, 6u, 8u, 10u, 12u, 14u, 16u, 18u, 20u, 22u, 24u, 26u, 28u, 30u))
#define QV_VST(v, p) vstore16((v), 0, (p))
#endif

#ifdef QV_VF
/* TX consecutive values of B's row k from column j (j % TX == 0). */
inline QV_VF qv_ld_bv(__global const void *B, int mode, int k, int j, int ldb)
{
    if (mode == QV_B_F16)
        return QV_VLDH((__global const half *)B + (size_t)k * ldb + j);
    if (mode == QV_B_TERN) {
        uint w = ((__global const uint *)B)[(size_t)k * ldb + (j >> 4)];
        QV_VU c = ((QV_VU)(w >> ((j & 15) * 2)) >> QV_VSH) & (QV_VU)(3u);
        return QV_VCVT(c) - (QV_VF)(1.0f);
    }
    return QV_VLDF((__global const float *)B + (size_t)k * ldb + j);
}

/* B's row k, columns j .. j+TX-1 one by one, clamped to No - 1 (rows
 * narrower than TX) */
inline QV_VF qv_ld_bs(__global const void *B, int mode, int k, int j, int ldb,
                      int No)
{
    float v[QV_TX];
#pragma unroll
    for (int c = 0; c < QV_TX; c++)
        v[c] = qv_ld_b(B, mode, min(j + c, No - 1), k, 1, ldb);
    return QV_VLDF(&v[0]);
}

inline void qv_gemm_cv(__global const float *A, int sa_i, int sa_k,
                       __global const void *B, int b_mode, int ldb,
                       __global float *C, int ldc, int Mo, int No, int Kr,
                       float alpha, int accumulate)
{
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int j0 = (int)get_group_id(0) * QV_BN + lx * QV_TX;
    if (j0 >= No || row0 + ly >= Mo)
        return; /* no column / row of this work-item is in C (no barrier
                   follows, so leaving early is allowed) */
    /* No branch inside the loop (PoCL vectorises across work-items only
     * without one): a work-item past the edge reads the last whole vector
     * of the row instead, and writes only its own columns. A ternary
     * vector never crosses a word, so it is read whole (padding codes past
     * No are decoded but not written); rows narrower than TX (uniform)
     * are read one column at a time. */
    const int narrow = b_mode != QV_B_TERN && No < QV_TX;
    const int jlast = b_mode == QV_B_TERN ? ((No - 1) / QV_TX) * QV_TX
                                          : max(No - QV_TX, 0);
    const int jr = min(j0, jlast);
    int ia[QV_TY];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        ia[r] = min(row0 + ly + r * QV_WG_Y, Mo - 1) * sa_i;
    QV_VF acc[QV_TY];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        acc[r] = (QV_VF)(0.0f);
    if (narrow) {
        for (int k = 0; k < Kr; k++) {
            QV_VF b = qv_ld_bs(B, b_mode, k, jr, ldb, No);
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
                acc[r] += A[ia[r] + k * sa_k] * b;
        }
    } else {
        int k = 0;
        for (; k + 4 <= Kr; k += 4) {
#pragma unroll
            for (int u = 0; u < 4; u++) {
                QV_VF b = qv_ld_bv(B, b_mode, k + u, jr, ldb);
#pragma unroll
                for (int r = 0; r < QV_TY; r++)
                    acc[r] += A[ia[r] + (k + u) * sa_k] * b;
            }
        }
        for (; k < Kr; k++) {
            QV_VF b = qv_ld_bv(B, b_mode, k, jr, ldb);
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
                acc[r] += A[ia[r] + k * sa_k] * b;
        }
    }
#pragma unroll
    for (int r = 0; r < QV_TY; r++) {
        int i = row0 + ly + r * QV_WG_Y;
        if (i >= Mo || j0 >= No)
            continue;
        __global float *cp = C + (size_t)i * ldc + jr;
        QV_VF v = alpha * acc[r];
        if (jr == j0 && j0 + QV_TX <= No) {
            if (accumulate)
                v += QV_VLDF(cp);
            QV_VST(v, cp);
        } else { /* only columns j0 .. No-1 are this work-item's */
            float o[QV_TX];
            QV_VST(v, &o[0]);
            for (int c = j0 - jr; c < QV_TX && jr + c < No; c++)
                cp[c] = accumulate ? cp[c] + o[c] : o[c];
        }
    }
}
#endif /* QV_VF */

/* ---- dot GEMM (LOCAL = 0 of the stages whose operands both run along K)
 * C(i, j) [+]= alpha * sum_k A[i*lda + k] * B[j*ldb + k], B f32 or half.
 * Each work-item owns the generic GEMM's TY x TX tile (columns strided by
 * WG_X) and walks K eight at a time: eight values of a B row converted at
 * once (vload8 / vload_half8) and reused across the TY rows, eight of an A
 * row reused across the TX columns, float8 accumulators summed at the end;
 * the loop is unrolled QV_KT times, the last K % 8 elements one by one.
 * Edge rows / columns are clamped for reading; their results are not
 * written. */
inline float8 qv_ld8(__global const void *B, int mode, size_t off)
{
    if (mode == QV_B_F16)
        return vload_half8(0, (__global const half *)B + off);
    return vload8(0, (__global const float *)B + off);
}

inline void qv_gemm_dot(__global const float *A, int lda,
                        __global const void *B, int b_mode, int ldb,
                        __global float *C, int ldc, int Mo, int No, int Kr,
                        float alpha, int accumulate)
{
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int col0 = (int)get_group_id(0) * QV_BN;
    if (col0 + lx >= No || row0 + ly >= Mo)
        return; /* nothing of this work-item is in C; no barrier follows */
    size_t xo[QV_TY], wo[QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        xo[r] = (size_t)min(row0 + ly + r * QV_WG_Y, Mo - 1) * lda;
#pragma unroll
    for (int c = 0; c < QV_TX; c++)
        wo[c] = (size_t)min(col0 + lx + c * QV_WG_X, No - 1) * ldb;
    float8 acc8[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc8[r][c] = (float8)(0.0f);
    int k = 0;
    for (; k + QV_KT * 8 <= Kr; k += QV_KT * 8) {
#pragma unroll
        for (int u = 0; u < QV_KT; u++) {
            float8 b[QV_TX];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                b[c] = qv_ld8(B, b_mode, wo[c] + k + u * 8);
#pragma unroll
            for (int r = 0; r < QV_TY; r++) {
                float8 a = vload8(0, A + xo[r] + k + u * 8);
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
        for (int c = 0; c < QV_TX; c++)
            acc[r][c] = qv_hsum8(acc8[r][c]);
    for (; k < Kr; k++) {
        float b[QV_TX];
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            b[c] = qv_ld_b(B, b_mode, 0, (int)(wo[c] + k), 0, 1);
#pragma unroll
        for (int r = 0; r < QV_TY; r++) {
            float a = A[xo[r] + k];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                acc[r][c] += a * b[c];
        }
    }
    qv_store_tile(acc, C, ldc, Mo, No, alpha, accumulate);
}

#endif /* QV_TX */
