#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/rmsnorm_bwd_dg.comp — rmsnorm_bwd stage 1, one invocation a
// column d: dg[d] += sum_t dY[t,d] * X[t,d] * rstd[t] (rstd from stage 0),
// in float, t ascending. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BG { float g[]; };
layout(binding = 2) readonly buffer BDY { float dY[]; };
layout(binding = 3) readonly buffer BR { float rstd[]; };
layout(binding = 4) buffer BDX { float dX[]; };
layout(binding = 5) buffer BDG { float dg[]; };
layout(push_constant) uniform PC { int T; int D; float eps; } pc;

void main()
{
    uint d = gl_GlobalInvocationID.x;
    if (d >= uint(pc.D))
        return;
    const uint D = uint(pc.D);
    float acc = 0.0;
    int t = 0;
    for (; t + UNROLL <= pc.T; t += UNROLL)
        for (int u = 0; u < UNROLL; u++) {
            uint e = uint(t + u) * D + d;
            acc += dY[e] * X[e] * rstd[t + u];
        }
    for (; t < pc.T; t++)
        acc += dY[uint(t) * D + d] * X[uint(t) * D + d] * rstd[t];
    dg[d] += acc;
}
