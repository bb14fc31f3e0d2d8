/* kernels/opencl/attention.cl — causal grouped-query softmax attention over
 * B sequences of S tokens (T = B*S), one work-item per (token t, query head
 * h), index t*Hq + h. Query head h reads key/value head h / (Hq/Hkv).
 * Online softmax in float over the keys j = 0..i of the sequence, in order:
 *   s_j = scale * Q_i.K_j, m = running max, l = running sum of e^(s - m),
 *   acc = running sum of e^(s - m) V_j;  O_i = acc / l.
 * The query and the accumulator live in private arrays of QV_ATTN_MAX_HD
 * floats (hd <= 128, checked by the declaration). */
#define QV_ATTN_MAX_HD 128

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
    float q[QV_ATTN_MAX_HD], acc[QV_ATTN_MAX_HD];
    __global const float *qi = Q + ((size_t)t * Hq + h) * hd;
    for (int d = 0; d < hd; d++) {
        q[d] = qi[d];
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= i; j++) {
        const size_t kv = ((size_t)(b * S + j) * Hkv + hk) * hd;
        __global const float *kj = K + kv;
        __global const float *vj = V + kv;
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * kj[d];
        s *= scale;
        const float mn = fmax(m, s);
        const float corr = exp(m - mn); /* 0 on the first key */
        const float p = exp(s - mn);
        l = l * corr + p;
        for (int d = 0; d < hd; d++)
            acc[d] = acc[d] * corr + p * vj[d];
        m = mn;
    }
    __global float *o = O + ((size_t)t * Hq + h) * hd;
    const float inv = 1.0f / l;
    for (int d = 0; d < hd; d++)
        o[d] = acc[d] * inv;
}
