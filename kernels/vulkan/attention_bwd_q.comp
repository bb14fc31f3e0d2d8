#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/attention_bwd_q.comp — attention_bwd stage 0, one invocation
// per (query row t, head h), index t*Hq + h (as attention.comp). Over the
// keys j <= i of the sequence, in float, j ascending:
//   L  = logsumexp_j(s_j), s_j = scale * Q_i . K_j   (max, then sum)
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

float dot_q_k(int qo, int ko, int hd)
{
    float s = 0.0;
    for (int d = 0; d < hd; d++)
        s += Q[qo + d] * Kb[ko + d];
    return s * pc.scale;
}

float dot_do_v(int qo, int ko, int hd)
{
    float s = 0.0;
    for (int d = 0; d < hd; d++)
        s += dO[qo + d] * Vb[ko + d];
    return s;
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

    float mx = dot_q_k(qo, (t0 * Hkv + hk) * hd, hd);
    for (int j = 1; j <= i; j++)
        mx = max(mx, dot_q_k(qo, ((t0 + j) * Hkv + hk) * hd, hd));
    float sum = 0.0;
    for (int j = 0; j <= i; j++)
        sum += exp(dot_q_k(qo, ((t0 + j) * Hkv + hk) * hd, hd) - mx);
    const float lse = mx + log(sum);

    float D = 0.0;
    for (int j = 0; j <= i; j++) {
        const int ko = ((t0 + j) * Hkv + hk) * hd;
        float p = exp(dot_q_k(qo, ko, hd) - lse);
        D += p * dot_do_v(qo, ko, hd);
    }
    L[g] = lse;
    Dd[g] = D;

    float acc[MAX_HD];
    for (int d = 0; d < hd; d++)
        acc[d] = 0.0;
    for (int j = 0; j <= i; j++) {
        const int ko = ((t0 + j) * Hkv + hk) * hd;
        float p = exp(dot_q_k(qo, ko, hd) - lse);
        float ds = p * (dot_do_v(qo, ko, hd) - D);
        for (int d = 0; d < hd; d++)
            acc[d] += ds * Kb[ko + d];
    }
    for (int d = 0; d < hd; d++)
        dQ[qo + d] = acc[d] * pc.scale;
}
