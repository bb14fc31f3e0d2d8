#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/ternary_pack.comp — one invocation per packed word (x along
// the ceil(K/16) words of a row, y along the N rows): 16 weights, each
// q = clamp(round_half_away(W * inv_scale), -1, 1) stored as code q + 1 in
// bits 2j..2j+1 (kernels/ternary.h); padding past K is code 1. `precise`
// keeps the product and the +0.5 separately rounded (no fma), so the codes
// equal the reference's bit for bit. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BW { float W[]; };
layout(binding = 1) writeonly buffer BP { uint P[]; };
layout(push_constant) uniform PC { int N; int K; float inv_scale; } pc;

void main()
{
    uint wi = gl_GlobalInvocationID.x;
    uint n = gl_GlobalInvocationID.y;
    const uint K = uint(pc.K);
    const uint words = (K + 15u) >> 4;
    if (wi >= words || n >= uint(pc.N))
        return;
    uint word = 0u;
    for (uint j = 0u; j < 16u; j++) {
        uint k = wi * 16u + j;
        uint code = 1u;
        if (k < K) {
            precise float v = W[n * K + k] * pc.inv_scale;
            precise float r = v < 0.0 ? -floor(-v + 0.5) : floor(v + 0.5);
            r = clamp(r, -1.0, 1.0);
            code = uint(int(r) + 1);
        }
        word |= code << (2u * j);
    }
    P[n * words + wi] = word;
}
