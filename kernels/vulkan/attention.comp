#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernels/vulkan/attention.comp — causal grouped-query softmax attention, one
// invocation per (query row t, head h), index t*Hq + h. Query i = t % S of
// sequence b = t / S attends to keys j <= i of that sequence through kv head
// h / (Hq/Hkv): P = softmax_j(scale * Q_i . K_j), O_i = sum_j P V_j.
// Online softmax in float (running max m, sum l, accumulator rescaled when m
// grows), j ascending; hd <= 128 (private array). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BK { float Kb[]; };
layout(binding = 2) readonly buffer BV { float Vb[]; };
layout(binding = 3) writeonly buffer BO { float O[]; };
layout(push_constant) uniform PC {
    int B; int S; int Hq; int Hkv; int hd; float scale;
} pc;

const int MAX_HD = 128;

// Loops over d run in blocks of UNROLL plus a tail, d ascending
// (ew_common.glsl: lavapipe's cap on loop iterations).
float score(int qo, int ko, int hd)
{
    float s = 0.0;
    int d = 0;
    for (; d + UNROLL <= hd; d += UNROLL)
        [[unroll]] for (int u = 0; u < UNROLL; u++)
            s += Q[qo + d + u] * Kb[ko + d + u];
    for (; d < hd; d++)
        s += Q[qo + d] * Kb[ko + d];
    return s * pc.scale;
}

void main()
{
    uint gid = gl_GlobalInvocationID.x;
    const int Hq = pc.Hq, Hkv = pc.Hkv, hd = pc.hd;
    if (gid >= uint(pc.B * pc.S) * uint(Hq))
        return;
    const int g = int(gid);
    const int t = g / Hq, h = g - t * Hq;
    const int i = t % pc.S, t0 = t - i;
    const int hk = h / (Hq / Hkv);
    const int qo = g * hd;

    float acc[MAX_HD];
    for (int d = 0; d < hd; d++)
        acc[d] = 0.0;
    float m = score(qo, (t0 * Hkv + hk) * hd, hd);
    float l = 0.0;
    for (int j = 0; j <= i; j++) {
        const int ko = ((t0 + j) * Hkv + hk) * hd;
        float s = score(qo, ko, hd);
        if (s > m) {
            float c = exp(m - s);
            l *= c;
            int d = 0;
            for (; d + UNROLL <= hd; d += UNROLL)
                [[unroll]] for (int u = 0; u < UNROLL; u++)
                    acc[d + u] *= c;
            for (; d < hd; d++)
                acc[d] *= c;
            m = s;
        }
        float p = exp(s - m);
        l += p;
        int d = 0;
        for (; d + UNROLL <= hd; d += UNROLL)
            [[unroll]] for (int u = 0; u < UNROLL; u++)
                acc[d + u] += p * Vb[ko + d + u];
        for (; d < hd; d++)
            acc[d] += p * Vb[ko + d];
    }
    for (int d = 0; d < hd; d++)
        O[qo + d] = acc[d] / l;
}
