#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/adamw.comp — one AdamW step per element, in f32, in the
// reference's order: g = G*gscale; m1 = beta1*m1 + (1-beta1)*g;
// m2 = beta2*m2 + (1-beta2)*g*g; P -= lr*((m1/bc1)/(sqrt(m2/bc2) + eps) + wd*P).
// Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) buffer BP { float P[]; };
layout(binding = 1) readonly buffer BG { float G[]; };
layout(binding = 2) buffer BM1 { float m1[]; };
layout(binding = 3) buffer BM2 { float m2[]; };
layout(push_constant) uniform PC {
    int n; float lr; float beta1; float beta2; float eps; float wd;
    float bc1; float bc2; float gscale;
} pc;

void main()
{
    uint i = gl_GlobalInvocationID.x;
    if (i >= uint(pc.n))
        return;
    float g = G[i] * pc.gscale;
    float a = pc.beta1 * m1[i] + (1.0 - pc.beta1) * g;
    float b = pc.beta2 * m2[i] + (1.0 - pc.beta2) * g * g;
    m1[i] = a;
    m2[i] = b;
    float mh = a / pc.bc1, vh = b / pc.bc2;
    float p = P[i];
    P[i] = p - pc.lr * (mh / (sqrt(vh) + pc.eps) + pc.wd * p);
}
