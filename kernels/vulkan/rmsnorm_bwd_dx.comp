#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/rmsnorm_bwd_dx.comp — rmsnorm_bwd stage 0, one invocation a
// row t: r = 1/sqrt(mean(x^2) + eps), rstd[t] = r; with xh = x*r and
// gy = dY*g: dX += r * (gy - xh * mean(gy * xh)). Sums in float, d
// ascending. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BG { float g[]; };
layout(binding = 2) readonly buffer BDY { float dY[]; };
layout(binding = 3) writeonly buffer BR { float rstd[]; };
layout(binding = 4) buffer BDX { float dX[]; };
layout(binding = 5) buffer BDG { float dg[]; };
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
    rstd[t] = r;
    float dot = 0.0;
    d = 0;
    for (; d + UNROLL <= D; d += UNROLL)
        for (int u = 0; u < UNROLL; u++)
            dot += (dY[base + d + u] * g[d + u]) * (X[base + d + u] * r);
    for (; d < D; d++)
        dot += (dY[base + d] * g[d]) * (X[base + d] * r);
    float mean = dot / float(D);
    d = 0;
    for (; d + UNROLL <= D; d += UNROLL)
        for (int u = 0; u < UNROLL; u++) {
            uint e = base + d + u;
            dX[e] += r * (dY[e] * g[d + u] - X[e] * r * mean);
        }
    for (; d < D; d++)
        dX[base + d] += r * (dY[base + d] * g[d] - X[base + d] * r * mean);
}
