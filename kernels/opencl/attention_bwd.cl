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
 * arrays of QV_ATTN_MAX_HD floats (hd <= 128, checked by the declaration).
 * attention_bwd_q takes two passes over the keys: the first gathers the
 * running max, sum and (rescaled alike) sum of P g online, the second
 * dQ. When hd % 4 == 0 (every BitNet shape; uniform over the launch) rows
 * are float4 vectors, else single floats: one body per stage over the
 * element type (QV_ATB_Q, QV_ATB_KV). */
#define QV_ATTN_MAX_HD 128
#define QV_ATTB_ARGS                                                           \
    __global const float *Q, __global const float *K,                          \
        __global const float *V, __global const float *dO, __global float *L, \
        __global float *Dd, __global float *dQ, __global float *dK,           \
        __global float *dV, int B, int S, int Hq, int Hkv, int hd,            \
        float scale

#define QV_LD1(i, p) ((p)[i])
#define QV_SUM1(v) (v)
#define QV_SUM4(v) ((v).s0 + (v).s1 + (v).s2 + (v).s3)
#define QV_ST_1(v, d, p) ((p)[d] = (v))
#define QV_ST_4(v, d, p) vstore4((v), (d), (p))

#define QV_ATB_Q(VT, W, LD, SUM)                                               \
    do {                                                                       \
        const int n = hd / (W);                                                \
        VT q[QV_ATTN_MAX_HD / (W)], g[QV_ATTN_MAX_HD / (W)];                   \
        VT acc[QV_ATTN_MAX_HD / (W)];                                          \
        for (int d = 0; d < n; d++) {                                          \
            q[d] = LD(d, qi);                                                  \
            g[d] = LD(d, doi);                                                 \
            acc[d] = (VT)(0.0f);                                               \
        }                                                                      \
        /* pass 1: max m, sum l of e^(s - m), Dn = sum e^(s - m) g_j */      \
        float m = -INFINITY, l = 0.0f, Dn = 0.0f;                              \
        for (int j = 0; j <= i; j++) {                                         \
            __global const float *kj = K0 + j * kstride;                       \
            __global const float *vj = V0 + j * kstride;                       \
            VT sv = (VT)(0.0f), gv = (VT)(0.0f);                               \
            for (int d = 0; d < n; d++) {                                      \
                sv += q[d] * LD(d, kj);                                        \
                gv += g[d] * LD(d, vj);                                        \
            }                                                                  \
            const float s = SUM(sv) * scale, gj = SUM(gv);                     \
            const float mn = fmax(m, s);                                       \
            const float corr = exp(m - mn); /* 0 on the first key */           \
            const float p = exp(s - mn);                                       \
            l = l * corr + p;                                                  \
            Dn = Dn * corr + p * gj;                                           \
            m = mn;                                                            \
        }                                                                      \
        const float lse = m + log(l), D = Dn / l;                              \
        L[gid] = lse;                                                          \
        Dd[gid] = D;                                                           \
        /* pass 2: dQ = scale * sum_j P_ij (g_ij - D) K_j */                   \
        for (int j = 0; j <= i; j++) {                                         \
            __global const float *kj = K0 + j * kstride;                       \
            __global const float *vj = V0 + j * kstride;                       \
            VT sv = (VT)(0.0f), gv = (VT)(0.0f);                               \
            for (int d = 0; d < n; d++) {                                      \
                sv += q[d] * LD(d, kj);                                        \
                gv += g[d] * LD(d, vj);                                        \
            }                                                                  \
            const float p = exp(SUM(sv) * scale - lse);                        \
            const float ds = p * (SUM(gv) - D);                                \
            for (int d = 0; d < n; d++)                                        \
                acc[d] += ds * LD(d, kj);                                      \
        }                                                                      \
        __global float *dq = dQ + ((size_t)t * Hq + h) * hd;                   \
        for (int d = 0; d < n; d++) {                                          \
            VT r = acc[d] * scale;                                             \
            QV_ST_##W(r, d, dq);                                               \
        }                                                                      \
    } while (0)

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
    if ((hd & 3) == 0)
        QV_ATB_Q(float4, 4, vload4, QV_SUM4);
    else
        QV_ATB_Q(float, 1, QV_LD1, QV_SUM1);
}

#define QV_ATB_KV(VT, W, LD, SUM)                                              \
    do {                                                                       \
        const int n = hd / (W);                                                \
        VT k[QV_ATTN_MAX_HD / (W)], v[QV_ATTN_MAX_HD / (W)];                   \
        VT ak[QV_ATTN_MAX_HD / (W)], av[QV_ATTN_MAX_HD / (W)];                 \
        for (int d = 0; d < n; d++) {                                          \
            k[d] = LD(d, kj);                                                  \
            v[d] = LD(d, vj);                                                  \
            ak[d] = (VT)(0.0f);                                                \
            av[d] = (VT)(0.0f);                                                \
        }                                                                      \
        for (int h = hk * grp; h < (hk + 1) * grp; h++)                        \
            for (int i = j; i < S; i++) {                                      \
                const size_t r = (size_t)(b * S + i) * Hq + h;                 \
                __global const float *qi = Q + r * hd;                         \
                __global const float *doi = dO + r * hd;                       \
                VT sv = (VT)(0.0f), gv = (VT)(0.0f);                           \
                for (int d = 0; d < n; d++) {                                  \
                    sv += LD(d, qi) * k[d];                                    \
                    gv += LD(d, doi) * v[d];                                   \
                }                                                              \
                const float p = exp(SUM(sv) * scale - L[r]);                   \
                const float ds = p * (SUM(gv) - Dd[r]);                        \
                for (int d = 0; d < n; d++) {                                  \
                    av[d] += p * LD(d, doi);                                   \
                    ak[d] += ds * LD(d, qi);                                   \
                }                                                              \
            }                                                                  \
        __global float *dk = dK + (size_t)gid * hd;                            \
        __global float *dv = dV + (size_t)gid * hd;                            \
        for (int d = 0; d < n; d++) {                                          \
            VT rk = ak[d] * scale;                                             \
            QV_ST_##W(av[d], d, dv);                                           \
            QV_ST_##W(rk, d, dk);                                              \
        }                                                                      \
    } while (0)

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
    if ((hd & 3) == 0)
        QV_ATB_KV(float4, 4, vload4, QV_SUM4);
    else
        QV_ATB_KV(float, 1, QV_LD1, QV_SUM1);
}
