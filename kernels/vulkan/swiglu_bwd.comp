#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/swiglu_bwd.comp — swiglu_bwd: dG = dH * U * f'(G),
// dU = dH * f(G); SiLU (act 0): f' = s * (1 + g*(1 - s)), s = 1/(1 + e^-g);
// squared ReLU (act 1): f' = 2g for g > 0. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BG { float G[]; };
layout(binding = 1) readonly buffer BU { float U[]; };
layout(binding = 2) readonly buffer BDH { float dH[]; };
layout(binding = 3) writeonly buffer BDG { float dG[]; };
layout(binding = 4) writeonly buffer BDU { float dU[]; };
layout(push_constant) uniform PC { int n; int act; } pc;

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= uint(pc.n))
        return;
    float g = G[i];
    float f, df;
    if (pc.act != 0) {
        f = g > 0.0 ? g * g : 0.0;
        df = g > 0.0 ? 2.0 * g : 0.0;
    } else {
        f = g / (1.0 + exp(-g));
        float s = 1.0 / (1.0 + exp(-g));
        df = s * (1.0 + g * (1.0 - s));
    }
    dG[i] = dH[i] * U[i] * df;
    dU[i] = dH[i] * f;
}
