#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/embed_f16.comp — embed_f16: X[t] = E[ids[t]] from an IEEE
// half table read as uint words and unpackHalf2x16 (no 16-bit storage
// needed), a zero row for an id outside 0..V-1. One invocation per (t, d).
// Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BI { int ids[]; };
layout(binding = 1) readonly buffer BE { uint E[]; };  // two halves a word
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
    if (id >= 0 && id < pc.V) {
        uint idx = uint(id) * uint(pc.D) + d;
        vec2 h = unpackHalf2x16(E[idx >> 1]);
        v = (idx & 1u) != 0u ? h.y : h.x;
    }
    X[t * uint(pc.D) + d] = v;
}
