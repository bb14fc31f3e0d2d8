#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/cross_entropy.comp — one invocation a row t: with target
// y in 0..V-1, loss = logsumexp(z) - z[y] and dlogits = gscale*(softmax(z) -
// onehot(y)); a target outside 0..V-1 is ignored (loss 0, zero gradient).
// Max, then the sum of exp(z - max) in float (v ascending), lse = max +
// log(sum). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) readonly buffer BZ { float Z[]; };
layout(binding = 1) readonly buffer BT { int targets[]; };
layout(binding = 2) writeonly buffer BL { float loss[]; };
layout(binding = 3) writeonly buffer BDZ { float dZ[]; };
layout(push_constant) uniform PC { int T; int V; float gscale; } pc;

void main()
{
    uint t = gl_GlobalInvocationID.x;
    if (t >= uint(pc.T))
        return;
    const int V = pc.V;
    const uint base = t * uint(V);
    int y = targets[t];
    const int Vb = V - V % UNROLL;  // blocked part, then the tail
    if (y < 0 || y >= V) {
        loss[t] = 0.0;
        for (int v = 0; v < Vb; v += UNROLL)
            for (int u = 0; u < UNROLL; u++)
                dZ[base + v + u] = 0.0;
        for (int v = Vb; v < V; v++)
            dZ[base + v] = 0.0;
        return;
    }
    float mx = Z[base];
    for (int v = 0; v < Vb; v += UNROLL)
        for (int u = 0; u < UNROLL; u++)
            mx = max(mx, Z[base + v + u]);
    for (int v = Vb; v < V; v++)
        mx = max(mx, Z[base + v]);
    float sum = 0.0;
    for (int v = 0; v < Vb; v += UNROLL)
        for (int u = 0; u < UNROLL; u++)
            sum += exp(Z[base + v + u] - mx);
    for (int v = Vb; v < V; v++)
        sum += exp(Z[base + v] - mx);
    float lse = mx + log(sum);
    loss[t] = lse - Z[base + y];
    for (int v = 0; v < Vb; v += UNROLL)
        for (int u = 0; u < UNROLL; u++) {
            float p = exp(Z[base + v + u] - lse);
            dZ[base + v + u] = pc.gscale * (v + u == y ? p - 1.0 : p);
        }
    for (int v = Vb; v < V; v++) {
        float p = exp(Z[base + v] - lse);
        dZ[base + v] = pc.gscale * (v == y ? p - 1.0 : p);
    }
}
