/* kernels/opencl/ternary_matmul.cl — Y(M,N) = (Xq(M,K) . W(N,K)^T) as int32,
 * then y = (float)acc / x_scale[m] * w_scale. W is packed ternary: 16
 * weights a uint32 word, code = w + 1 in 2 bits (kernels/ternary.h).
 *
 * Each work-item owns a TY x TX register tile; every packed word is
 * decoded once per work-item and each decoded weight reused across the TY
 * rows, each loaded activation reused across the TX columns.
 * QV_LOCAL = 0: words and activations straight from global memory, the word
 * loop unrolled QV_KT times; the last, partial word (K % 16 != 0) reads no
 * activation past K. QV_LOCAL = 1: the group stages BM x (KT*16) activations
 * and BN x KT words in __local memory per step (zero / code 1 padded). */

/* acc[r][c] += sum_{k < nk} x_r[k] * weight_k(w[c]). */
#define TM_WORD(XR, nk)                                                        \
    do {                                                                       \
        _Pragma("unroll") for (int k = 0; k < 16; k++) {                       \
            if (k < (nk)) {                                                    \
                int wv[QV_TX];                                                 \
                _Pragma("unroll") for (int c = 0; c < QV_TX; c++)              \
                    wv[c] = (int)((w[c] >> (2 * k)) & 3u) - 1;                 \
                _Pragma("unroll") for (int r = 0; r < QV_TY; r++) {            \
                    int xv = (int)(XR)[r][k];                                  \
                    _Pragma("unroll") for (int c = 0; c < QV_TX; c++)          \
                        acc[r][c] += xv * wv[c];                               \
                }                                                              \
            }                                                                  \
        }                                                                      \
    } while (0)

__kernel QV_REQD void ternary_matmul(__global const char *Xq,
                                     __global const float *x_scale,
                                     __global const uint *W, __global float *Y,
                                     int M, int N, int K, float w_scale)
{
    const int lx = (int)get_local_id(0), ly = (int)get_local_id(1);
    const int row0 = (int)get_group_id(1) * QV_BM;
    const int col0 = (int)get_group_id(0) * QV_BN;
    const int KW = (K + 15) / 16;
    int acc[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc[r][c] = 0;

#if QV_LOCAL
    __local char4 xs4[QV_BM][QV_KT * 4];
    __local uint ws[QV_KT][QV_BN];
    const int nthr = QV_WG_X * QV_WG_Y, tid = ly * QV_WG_X + lx;
    for (int kw0 = 0; kw0 < KW; kw0 += QV_KT) {
        /* activations four at a time (vload4: rows need not be aligned),
         * byte by byte only where the tile crosses K */
        for (int e = tid; e < QV_BM * QV_KT * 4; e += nthr) {
            int r = e / (QV_KT * 4), q = e % (QV_KT * 4);
            int gi = row0 + r, gk = kw0 * 16 + q * 4;
            char4 v = (char4)(0);
            if (gi < M && gk + 4 <= K) {
                v = vload4(0, Xq + gi * K + gk);
            } else if (gi < M && gk < K) {
                __global const char *p = Xq + gi * K + gk;
                v.s0 = p[0];
                v.s1 = gk + 1 < K ? p[1] : (char)0;
                v.s2 = gk + 2 < K ? p[2] : (char)0;
            }
            xs4[r][q] = v;
        }
        for (int e = tid; e < QV_KT * QV_BN; e += nthr) {
            int c = e % QV_BN, u = e / QV_BN;
            int gj = col0 + c, gw = kw0 + u;
            ws[u][c] = (gj < N && gw < KW) ? W[gj * KW + gw] : 0x55555555u;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (int u = 0; u < QV_KT; u++) {
            uint w[QV_TX];
            __local const char *xr[QV_TY];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                w[c] = ws[u][lx + c * QV_WG_X];
#pragma unroll
            for (int r = 0; r < QV_TY; r++)
                xr[r] = (__local const char *)&xs4[ly + r * QV_WG_Y][u * 4];
            TM_WORD(xr, 16);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#else
    /* Edge rows / columns are clamped for reading; their results are not
     * written. */
    __global const char *xrow[QV_TY];
    __global const uint *wrow[QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
        xrow[r] = Xq + min(row0 + ly + r * QV_WG_Y, M - 1) * K;
#pragma unroll
    for (int c = 0; c < QV_TX; c++)
        wrow[c] = W + min(col0 + lx + c * QV_WG_X, N - 1) * KW;
    const int KF = K / 16; /* whole words */
    int kw = 0;
    /* whole words sixteen lanes at a time: each word decoded into a float16
     * of weights once and reused across the TY rows, each row's 16
     * activations loaded as one char16, converted once and reused across
     * the TX columns, float16 fused multiply-adds summed once at the end.
     * Exact: every product is an integer of magnitude <= 128 and every
     * partial sum stays below 2^24 (tm_check caps K), so the float sums
     * are the integer sums; FMA is what CPUs and GPUs run fastest. */
    const uint16 sh = (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    float16 acc16[QV_TY][QV_TX];
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc16[r][c] = (float16)(0.0f);
    for (; kw + QV_KT <= KF; kw += QV_KT) {
#pragma unroll
        for (int u = 0; u < QV_KT; u++) {
            float16 wv[QV_TX];
#pragma unroll
            for (int c = 0; c < QV_TX; c++)
                wv[c] = convert_float16(((uint16)(wrow[c][kw + u]) >> sh) & (uint16)(3u)) - (float16)(1.0f);
#pragma unroll
            for (int r = 0; r < QV_TY; r++) {
                float16 xv = convert_float16(vload16(0, xrow[r] + (kw + u) * 16));
#pragma unroll
                for (int c = 0; c < QV_TX; c++)
                    acc16[r][c] = fma(xv, wv[c], acc16[r][c]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < QV_TY; r++)
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            acc[r][c] += (int)qv_hsum16(acc16[r][c]);
    for (; kw < KW; kw++) {
        const int nk = min(16, K - kw * 16);
        uint w[QV_TX];
        __global const char *xr[QV_TY];
#pragma unroll
        for (int c = 0; c < QV_TX; c++)
            w[c] = wrow[c][kw];
#pragma unroll
        for (int r = 0; r < QV_TY; r++)
            xr[r] = xrow[r] + kw * 16;
        TM_WORD(xr, nk);
    }
#endif

#pragma unroll
    for (int r = 0; r < QV_TY; r++) {
        int i = row0 + ly + r * QV_WG_Y;
#pragma unroll
        for (int c = 0; c < QV_TX; c++) {
            int j = col0 + lx + c * QV_WG_X;
            if (i < M && j < N)
                Y[i * N + j] = (float)acc[r][c] / x_scale[i] * w_scale;
        }
    }
}
