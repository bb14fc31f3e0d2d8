#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernels/vulkan/attention_bwd_q.comp — attention_bwd stage 0, one invocation
// per (query row t, head h), index t*Hq + h (as attention.comp). Over the
// keys j <= i of the sequence, in float, j ascending:
//   L  = logsumexp_j(s_j), s_j = scale * Q_i . K_j   (running max and sum)
//   Dd = sum_j P_j (dO_i . V_j),  P_j = exp(s_j - L)
//   dQ_i = scale * sum_j P_j (dO_i . V_j - Dd) K_j
// hd <= 128 (private array). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BK { float Kb[]; };
layout(binding = 2) readonly buffer BV { float Vb[]; };
layout(binding = 3) readonly buffer BDO { float dO[]; };
layout(binding = 4) writeonly buffer BL { float L[]; };
layout(binding = 5) writeonly buffer BD { float Dd[]; };
layout(binding = 6) writeonly buffer BDQ { float dQ[]; };
layout(binding = 7) buffer BDK { float dK[]; };
layout(binding = 8) buffer BDV { float dV[]; };
layout(push_constant) uniform PC {
    int B; int S; int Hq; int Hkv; int hd; float scale;
} pc;

const int MAX_HD = 128;

// Q_i . K_j * scale and dO_i . V_j in one pass over d, d ascending, in
// blocks of UNROLL plus a tail (ew_common.glsl: lavapipe's loop cap).
void dots(int qo, int ko, int hd, out float s, out float dov)
{
    float a = 0.0, b = 0.0;
    int d = 0;
    for (; d + UNROLL <= hd; d += UNROLL)
        [[unroll]] for (int u = 0; u < UNROLL; u++) {
            a += Q[qo + d + u] * Kb[ko + d + u];
            b += dO[qo + d + u] * Vb[ko + d + u];
        }
    for (; d < hd; d++) {
        a += Q[qo + d] * Kb[ko + d];
        b += dO[qo + d] * Vb[ko + d];
    }
    s = a * pc.scale;
    dov = b;
}

float score(int qo, int ko, int hd)
{
    float a = 0.0;
    int d = 0;
    for (; d + UNROLL <= hd; d += UNROLL)
        [[unroll]] for (int u = 0; u < UNROLL; u++)
            a += Q[qo + d + u] * Kb[ko + d + u];
    for (; d < hd; d++)
        a += Q[qo + d] * Kb[ko + d];
    return a * pc.scale;
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

    // logsumexp: running max m and sum l of exp(s - m), rescaled when m grows
    float m = score(qo, (t0 * Hkv + hk) * hd, hd);
    float l = 0.0;
    for (int j = 0; j <= i; j++) {
        float s = score(qo, ((t0 + j) * Hkv + hk) * hd, hd);
        if (s > m) {
            l *= exp(m - s);
            m = s;
        }
        l += exp(s - m);
    }
    const float lse = m + log(l);

    float D = 0.0;
    for (int j = 0; j <= i; j++) {
        float s, dov;
        dots(qo, ((t0 + j) * Hkv + hk) * hd, hd, s, dov);
        D += exp(s - lse) * dov;
    }
    L[g] = lse;
    Dd[g] = D;

    float acc[MAX_HD];
    for (int d = 0; d < hd; d++)
        acc[d] = 0.0;
    for (int j = 0; j <= i; j++) {
        const int ko = ((t0 + j) * Hkv + hk) * hd;
        float s, dov;
        dots(qo, ko, hd, s, dov);
        float ds = exp(s - lse) * (dov - D);
        int d = 0;
        for (; d + UNROLL <= hd; d += UNROLL)
            [[unroll]] for (int u = 0; u < UNROLL; u++)
                acc[d + u] += ds * Kb[ko + d + u];
        for (; d < hd; d++)
            acc[d] += ds * Kb[ko + d];
    }
    for (int d = 0; d < hd; d++)
        dQ[qo + d] = acc[d] * pc.scale;
}
