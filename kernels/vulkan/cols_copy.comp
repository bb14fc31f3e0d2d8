#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/cols_copy.comp — cols_copy: dir 0: B[t, off+j] = A[t, j];
// dir 1: A[t, j] = B[t, off+j]; A is (T, W), B (T, Vw). One invocation per
// (t, j). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) buffer BA { float A[]; };
layout(binding = 1) buffer BB { float B[]; };
layout(push_constant) uniform PC { int T; int W; int Vw; int off; int dir; } pc;

void main()
{
    uint j = gl_GlobalInvocationID.x;
    uint t = gl_GlobalInvocationID.y;
    if (j >= uint(pc.W) || t >= uint(pc.T))
        return;
    uint ia = t * uint(pc.W) + j, ib = t * uint(pc.Vw) + uint(pc.off) + j;
    if (pc.dir != 0)
        A[ia] = B[ib];
    else
        B[ib] = A[ia];
}
