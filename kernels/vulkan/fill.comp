#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/fill.comp — fill: Y[i] = value. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC { int n; float value; } pc;

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= uint(pc.n))
        return;
    Y[i] = pc.value;
}
