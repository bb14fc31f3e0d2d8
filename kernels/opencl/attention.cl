/* kernels/opencl/attention.cl — causal grouped-query softmax attention over
 * B sequences of S tokens (T = B*S), one work-item per (token t, query head
 * h), index t*Hq + h. Query head h reads key/value head h / (Hq/Hkv).
 * Online softmax in float over the keys j = 0..i of the sequence, in order:
 *   s_j = scale * Q_i.K_j, m = running max, l = running sum of e^(s - m),
 *   acc = running sum of e^(s - m) V_j;  O_i = acc / l.
 * The query and the accumulator live in private arrays of QV_ATTN_MAX_HD
 * floats (hd <= 128, checked by the declaration). When hd % 4 == 0 (every
 * BitNet shape; uniform over the launch) they are float4 vectors and the
 * rows are read four floats at a time; otherwise one float at a time. The
 * two paths are one body (QV_ATT_FWD) over the element type. Keys go four
 * a step (four independent dot products and one rescale of the running
 * sums), the last i+1 % 4 one at a time. */
#define QV_ATTN_MAX_HD 128
#define QV_LD1(i, p) ((p)[i])
#define QV_SUM1(v) (v)
#define QV_SUM4(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)

#define QV_ATT_FWD(VT, W, LD, SUM)                                             \
    do {                                                                       \
        const int n = hd / (W);                                                \
        VT q[QV_ATTN_MAX_HD / (W)], acc[QV_ATTN_MAX_HD / (W)];                 \
        for (int d = 0; d < n; d++) {                                          \
            q[d] = LD(d, qi);                                                  \
            acc[d] = (VT)(0.0f);                                               \
        }                                                                      \
        float m = -INFINITY, l = 0.0f;                                         \
        const size_t ks = (size_t)Hkv * hd; /* one key row to the next */      \
        __global const float *k0 = K + ((size_t)(b * S) * Hkv + hk) * hd;     \
        __global const float *v0 = V + ((size_t)(b * S) * Hkv + hk) * hd;     \
        int j = 0;                                                             \
        /* four keys a step: four independent dot products, one rescale */    \
        for (; j + 4 <= i + 1; j += 4) {                                       \
            __global const float *kj = k0 + j * ks, *vj = v0 + j * ks;         \
            VT s0 = (VT)(0.0f), s1 = s0, s2 = s0, s3 = s0;                     \
            for (int d = 0; d < n; d++) {                                      \
                s0 += q[d] * LD(d, kj);                                        \
                s1 += q[d] * LD(d, kj + ks);                                   \
                s2 += q[d] * LD(d, kj + 2 * ks);                               \
                s3 += q[d] * LD(d, kj + 3 * ks);                               \
            }                                                                  \
            const float a0 = SUM(s0) * scale, a1 = SUM(s1) * scale;            \
            const float a2 = SUM(s2) * scale, a3 = SUM(s3) * scale;            \
            const float mn = fmax(fmax(m, fmax(a0, a1)), fmax(a2, a3));        \
            const float corr = exp(m - mn); /* 0 on the first keys */          \
            const float p0 = exp(a0 - mn), p1 = exp(a1 - mn);                  \
            const float p2 = exp(a2 - mn), p3 = exp(a3 - mn);                  \
            l = l * corr + ((p0 + p1) + (p2 + p3));                            \
            for (int d = 0; d < n; d++)                                        \
                acc[d] = acc[d] * corr + (p0 * LD(d, vj) + p1 * LD(d, vj + ks) \
                         + p2 * LD(d, vj + 2 * ks) + p3 * LD(d, vj + 3 * ks)); \
            m = mn;                                                            \
        }                                                                      \
        for (; j <= i; j++) {                                                  \
            __global const float *kj = k0 + j * ks, *vj = v0 + j * ks;         \
            VT sv = (VT)(0.0f);                                                \
            for (int d = 0; d < n; d++)                                        \
                sv += q[d] * LD(d, kj);                                        \
            const float s = SUM(sv) * scale;                                   \
            const float mn = fmax(m, s);                                       \
            const float corr = exp(m - mn); /* 0 on the first key */           \
            const float p = exp(s - mn);                                       \
            l = l * corr + p;                                                  \
            for (int d = 0; d < n; d++)                                        \
                acc[d] = acc[d] * corr + p * LD(d, vj);                        \
            m = mn;                                                            \
        }                                                                      \
        __global float *o = O + ((size_t)t * Hq + h) * hd;                     \
        const float inv = 1.0f / l;                                            \
        for (int d = 0; d < n; d++) {                                          \
            VT r = acc[d] * inv;                                               \
            QV_ST_##W(r, d, o);                                                \
        }                                                                      \
    } while (0)
#define QV_ST_1(v, d, p) ((p)[d] = (v))
#define QV_ST_4(v, d, p) vstore4((v), (d), (p))

__kernel QV_REQD void attention(__global const float *Q,
                                __global const float *K,
                                __global const float *V, __global float *O,
                                int B, int S, int Hq, int Hkv, int hd,
                                float scale)
{
    const int gid = (int)get_global_id(0);
    if (gid >= B * S * Hq)
        return;
    const int t = gid / Hq, h = gid % Hq;
    const int b = t / S, i = t % S;
    const int hk = h / (Hq / Hkv);
    __global const float *qi = Q + ((size_t)t * Hq + h) * hd;
    if ((hd & 3) == 0)
        QV_ATT_FWD(float4, 4, vload4, QV_SUM4);
    else
        QV_ATT_FWD(float, 1, QV_LD1, QV_SUM1);
}
