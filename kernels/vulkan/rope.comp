#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/rope.comp — rope, in place: one invocation per pair
// (x along the H*hd/2 pairs of a row, y along the T rows). Row t is at
// position p = t % S; pair i of each head (elements 2i, 2i+1 when neox = 0,
// i, i + hd/2 when neox = 1) turns by (c, sign*s) from the host table
// cs (S, hd/2, 2): (x0, x1) <- (x0*c - x1*s, x0*s + x1*c).
// Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) buffer BX { float X[]; };
layout(binding = 1) readonly buffer BCS { float cs[]; };
layout(push_constant) uniform PC { int T; int H; int hd; int S; int sign; int neox; } pc;

void main()
{
    uint q = gl_GlobalInvocationID.x;      // pair within the row
    uint t = gl_GlobalInvocationID.y;
    const uint half_hd = uint(pc.hd) >> 1;
    if (q >= uint(pc.H) * half_hd || t >= uint(pc.T))
        return;
    uint p = t % uint(pc.S);
    uint i = q % half_hd;
    uint c0 = (p * half_hd + i) * 2u;
    float c = cs[c0];
    float s = float(pc.sign) * cs[c0 + 1u];
    uint row = t * uint(pc.H) * uint(pc.hd);
    uint o0 = pc.neox != 0 ? row + (q / half_hd) * uint(pc.hd) + i : row + 2u * q;
    uint o1 = pc.neox != 0 ? o0 + half_hd : o0 + 1u;
    float x0 = X[o0], x1 = X[o1];
    X[o0] = x0 * c - x1 * s;
    X[o1] = x0 * s + x1 * c;
}
