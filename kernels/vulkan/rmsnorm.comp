#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/rmsnorm.comp — rmsnorm per row t (one invocation a row):
// r = 1/sqrt(mean(x^2) + eps), Y = X * r * g. Sum of squares in float, d
// ascending. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BG { float g[]; };
layout(binding = 2) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC { int T; int D; float eps; } pc;

void main()
{
    uint t = gl_GlobalInvocationID.x;
    if (t >= uint(pc.T))
        return;
    const int D = pc.D;
    const uint base = t * uint(D);
    float ss = 0.0;
    int d = 0;
    for (; d + UNROLL <= D; d += UNROLL)
        for (int u = 0; u < UNROLL; u++) {
            float x = X[base + d + u];
            ss += x * x;
        }
    for (; d < D; d++) {
        float x = X[base + d];
        ss += x * x;
    }
    float r = 1.0 / sqrt(ss / float(D) + pc.eps);
    d = 0;
    for (; d + UNROLL <= D; d += UNROLL)
        for (int u = 0; u < UNROLL; u++)
            Y[base + d + u] = X[base + d + u] * r * g[d + u];
    for (; d < D; d++)
        Y[base + d] = X[base + d] * r * g[d];
}
