#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/embed.comp — embed: X[t] = E[ids[t]], a zero row for an id
// outside 0..V-1. One invocation per (t, d): x along d, y along t.
// Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BI { int ids[]; };
layout(binding = 1) readonly buffer BE { float E[]; };
layout(binding = 2) writeonly buffer BX { float X[]; };
layout(push_constant) uniform PC { int T; int D; int V; } pc;

void main()
{
    uint d = gl_GlobalInvocationID.x;
    uint t = gl_GlobalInvocationID.y;
    if (d >= uint(pc.D) || t >= uint(pc.T))
        return;
    int id = ids[t];
    float v = 0.0;
    if (id >= 0 && id < pc.V)
        v = E[uint(id) * uint(pc.D) + d];
    X[t * uint(pc.D) + d] = v;
}
