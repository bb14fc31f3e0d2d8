#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
// kernels/vulkan/attention_bwd_kv.comp — attention_bwd stage 1, one invocation
// per (key row tj, kv head hk), index tj*Hkv + hk. Over the heads h of the
// group (ascending) and, for each, the queries i >= j of the sequence
// (ascending), in float, with L and Dd from stage 0:
//   P = exp(scale * Q_i . K_j - L_i),  dS = P (dO_i . V_j - Dd_i)
//   dV_j = sum P dO_i,  dK_j = scale * sum dS Q_i
// hd <= 128 (two private arrays). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BQ { float Q[]; };
layout(binding = 1) readonly buffer BK { float Kb[]; };
layout(binding = 2) readonly buffer BV { float Vb[]; };
layout(binding = 3) readonly buffer BDO { float dO[]; };
layout(binding = 4) readonly buffer BL { float L[]; };
layout(binding = 5) readonly buffer BD { float Dd[]; };
layout(binding = 6) buffer BDQ { float dQ[]; };
layout(binding = 7) writeonly buffer BDK { float dK[]; };
layout(binding = 8) writeonly buffer BDV { float dV[]; };
layout(push_constant) uniform PC {
    int B; int S; int Hq; int Hkv; int hd; float scale;
} pc;

const int MAX_HD = 128;

void main()
{
    uint gid = gl_GlobalInvocationID.x;
    const int Hq = pc.Hq, Hkv = pc.Hkv, hd = pc.hd, S = pc.S;
    if (gid >= uint(pc.B * S) * uint(Hkv))
        return;
    const int g = int(gid);
    const int tj = g / Hkv, hk = g - tj * Hkv;
    const int j = tj % S, t0 = tj - j;
    const int grp = Hq / Hkv;
    const int ko = g * hd;

    float ak[MAX_HD];
    float av[MAX_HD];
    for (int d = 0; d < hd; d++) {
        ak[d] = 0.0;
        av[d] = 0.0;
    }
    for (int h = hk * grp; h < (hk + 1) * grp; h++)
        for (int i = j; i < S; i++) {
            const int r = (t0 + i) * Hq + h;
            const int qo = r * hd;
            // d ascending, in blocks of UNROLL plus a tail
            // (ew_common.glsl: lavapipe's loop cap)
            float s = 0.0, dov = 0.0;
            int d = 0;
            for (; d + UNROLL <= hd; d += UNROLL)
                [[unroll]] for (int u = 0; u < UNROLL; u++) {
                    s += Q[qo + d + u] * Kb[ko + d + u];
                    dov += dO[qo + d + u] * Vb[ko + d + u];
                }
            for (; d < hd; d++) {
                s += Q[qo + d] * Kb[ko + d];
                dov += dO[qo + d] * Vb[ko + d];
            }
            float p = exp(s * pc.scale - L[r]);
            float ds = p * (dov - Dd[r]);
            d = 0;
            for (; d + UNROLL <= hd; d += UNROLL)
                [[unroll]] for (int u = 0; u < UNROLL; u++) {
                    av[d + u] += p * dO[qo + d + u];
                    ak[d + u] += ds * Q[qo + d + u];
                }
            for (; d < hd; d++) {
                av[d] += p * dO[qo + d];
                ak[d] += ds * Q[qo + d];
            }
        }
    for (int d = 0; d < hd; d++) {
        dV[ko + d] = av[d];
        dK[ko + d] = ak[d] * pc.scale;
    }
}
