#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/swiglu.comp — swiglu: H = f(G) * U, f = SiLU g/(1 + e^-g)
// (act 0) or squared ReLU (act 1). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BG { float G[]; };
layout(binding = 1) readonly buffer BU { float U[]; };
layout(binding = 2) writeonly buffer BH { float H[]; };
layout(push_constant) uniform PC { int n; int act; } pc;

float act_f(float g)
{
    if (pc.act != 0)
        return g > 0.0 ? g * g : 0.0;
    return g / (1.0 + exp(-g));
}

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= uint(pc.n))
        return;
    H[i] = act_f(G[i]) * U[i];
}
