#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/axpby.comp — axpby: Y = alpha*X + beta*Y; with beta = 0 Y is
// not read (it may hold garbage, NaN included). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) buffer BY { float Y[]; };
layout(push_constant) uniform PC { int n; float alpha; float beta; } pc;

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= uint(pc.n))
        return;
    if (pc.beta == 0.0)
        Y[i] = pc.alpha * X[i];
    else
        Y[i] = pc.alpha * X[i] + pc.beta * Y[i];
}
