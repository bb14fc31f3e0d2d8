/* kernels/opencl/attention_bwd.cl — attention backward in two stages
 * (in-order queue: stage 1 reads the L and Dd of stage 0). With
 * s_ij = scale * Q_i.K_j, P_ij = e^(s_ij - L_i), g_ij = dO_i.V_j:
 *   attention_bwd_q, per (token t, query head h), index t*Hq + h:
 *     L = logsumexp_j<=i s_ij, Dd = sum_j P_ij g_ij,
 *     dQ_i = scale * sum_j P_ij (g_ij - Dd) K_j
 *   attention_bwd_kv, per (token t, kv head hk), index t*Hkv + hk, over the
 *     query heads of the group (ascending) and the queries i >= j:
 *     dV_j = sum P_ij dO_i,  dK_j = scale * sum P_ij (g_ij - Dd_i) Q_i
 * Float sums in a fixed order inside one work-item; no atomics. Private
 * arrays of QV_ATTN_MAX_HD floats (hd <= 128, checked by the declaration). */
#define QV_ATTN_MAX_HD 128
#define QV_ATTB_ARGS                                                           \
    __global const float *Q, __global const float *K,                          \
        __global const float *V, __global const float *dO, __global float *L, \
        __global float *Dd, __global float *dQ, __global float *dK,           \
        __global float *dV, int B, int S, int Hq, int Hkv, int hd,            \
        float scale

inline float qv_dot(__global const float *a, __global const float *b, int n)
{
    float s = 0.0f;
    for (int d = 0; d < n; d++)
        s += a[d] * b[d];
    return s;
}

__kernel QV_REQD void attention_bwd_q(QV_ATTB_ARGS)
{
    const int gid = (int)get_global_id(0);
    if (gid >= B * S * Hq)
        return;
    const int t = gid / Hq, h = gid % Hq;
    const int b = t / S, i = t % S;
    const int hk = h / (Hq / Hkv);
    __global const float *qi = Q + ((size_t)t * Hq + h) * hd;
    __global const float *doi = dO + ((size_t)t * Hq + h) * hd;
    __global const float *K0 = K + ((size_t)(b * S) * Hkv + hk) * hd;
    __global const float *V0 = V + ((size_t)(b * S) * Hkv + hk) * hd;
    const size_t kstride = (size_t)Hkv * hd;
    float q[QV_ATTN_MAX_HD], acc[QV_ATTN_MAX_HD];
    for (int d = 0; d < hd; d++) {
        q[d] = qi[d];
        acc[d] = 0.0f;
    }
    /* logsumexp of the scores: max, then the sum */
    float m = -INFINITY;
    for (int j = 0; j <= i; j++) {
        __global const float *kj = K0 + j * kstride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * kj[d];
        m = fmax(m, s * scale);
    }
    float sum = 0.0f;
    for (int j = 0; j <= i; j++) {
        __global const float *kj = K0 + j * kstride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * kj[d];
        sum += exp(s * scale - m);
    }
    const float lse = m + log(sum);
    /* Dd = sum_j P_ij g_ij */
    float D = 0.0f;
    for (int j = 0; j <= i; j++) {
        __global const float *kj = K0 + j * kstride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * kj[d];
        const float p = exp(s * scale - lse);
        D += p * qv_dot(doi, V0 + j * kstride, hd);
    }
    L[gid] = lse;
    Dd[gid] = D;
    for (int j = 0; j <= i; j++) {
        __global const float *kj = K0 + j * kstride;
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * kj[d];
        const float p = exp(s * scale - lse);
        const float ds = p * (qv_dot(doi, V0 + j * kstride, hd) - D);
        for (int d = 0; d < hd; d++)
            acc[d] += ds * kj[d];
    }
    __global float *dq = dQ + ((size_t)t * Hq + h) * hd;
    for (int d = 0; d < hd; d++)
        dq[d] = acc[d] * scale;
}

__kernel QV_REQD void attention_bwd_kv(QV_ATTB_ARGS)
{
    const int gid = (int)get_global_id(0);
    if (gid >= B * S * Hkv)
        return;
    const int tj = gid / Hkv, hk = gid % Hkv;
    const int b = tj / S, j = tj % S;
    const int grp = Hq / Hkv;
    __global const float *kj = K + (size_t)gid * hd;
    __global const float *vj = V + (size_t)gid * hd;
    float ak[QV_ATTN_MAX_HD], av[QV_ATTN_MAX_HD];
    for (int d = 0; d < hd; d++) {
        ak[d] = 0.0f;
        av[d] = 0.0f;
    }
    for (int h = hk * grp; h < (hk + 1) * grp; h++)
        for (int i = j; i < S; i++) {
            const size_t r = (size_t)(b * S + i) * Hq + h;
            __global const float *qi = Q + r * hd;
            __global const float *doi = dO + r * hd;
            const float p = exp(qv_dot(qi, kj, hd) * scale - L[r]);
            const float ds = p * (qv_dot(doi, vj, hd) - Dd[r]);
            for (int d = 0; d < hd; d++) {
                av[d] += p * doi[d];
                ak[d] += ds * qi[d];
            }
        }
    __global float *dk = dK + (size_t)gid * hd;
    __global float *dv = dV + (size_t)gid * hd;
    for (int d = 0; d < hd; d++) {
        dv[d] = av[d];
        dk[d] = ak[d] * scale;
    }
}
