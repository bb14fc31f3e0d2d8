#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/embed_bwd.comp — embed_bwd: dE[v] += sum of dX[t] over the
// t with ids[t] = v, t ascending, in float (no atomics). One invocation per
// (v, d): x along d, y along v. Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BI { int ids[]; };
layout(binding = 1) readonly buffer BDX { float dX[]; };
layout(binding = 2) buffer BDE { float dE[]; };
layout(push_constant) uniform PC { int T; int D; int V; } pc;

void main()
{
    uint d = gl_GlobalInvocationID.x;
    uint v = gl_GlobalInvocationID.y;
    if (d >= uint(pc.D) || v >= uint(pc.V))
        return;
    const uint D = uint(pc.D);
    float acc = dE[v * D + d];
    int t = 0;
    for (; t + UNROLL <= pc.T; t += UNROLL)
        for (int u = 0; u < UNROLL; u++)
            if (ids[t + u] == int(v))
                acc += dX[uint(t + u) * D + d];
    for (; t < pc.T; t++)
        if (ids[t] == int(v))
            acc += dX[uint(t) * D + d];
    dE[v * D + d] = acc;
}
