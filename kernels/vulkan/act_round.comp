#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/act_round.comp — llama.cpp's CPU activation rounding in
// place on X (T, K): mode 1 IEEE half, 2 bfloat16 (nearest, ties to even),
// 3 q8_K blocks of 256 (iscale = -127 / signed largest, codes clamped at
// 127). One invocation per (row, block of 256). Maths: kernels/ref/ref_nn.c.

#include "ew_common.glsl"

layout(binding = 0) buffer BX { float X[]; };
layout(push_constant) uniform PC { int T; int K; int mode; } pc;

float round_f16(float x)
{
    uint u = floatBitsToUint(x), a = u & 0x7fffffffu, sgn = u & 0x80000000u;
    if (a >= 0x7f800000u)
        return x;
    if (a >= 0x477ff000u)
        return uintBitsToFloat(sgn | 0x7f800000u);
    if (a < 0x38800000u) {
        float y = roundEven(abs(x) * 16777216.0) * (1.0 / 16777216.0);
        return x < 0.0 ? -y : y;
    }
    a = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    return uintBitsToFloat(sgn | a);
}

float round_bf16(float x)
{
    uint u = floatBitsToUint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return uintBitsToFloat(u | 0x00400000u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return uintBitsToFloat(u);
}

void main()
{
    int b = int(gl_GlobalInvocationID.x), t = int(gl_GlobalInvocationID.y);
    int j0 = b * 256;
    if (j0 >= pc.K || t >= pc.T)
        return;
    int j1 = min(pc.K, j0 + 256);
    uint base = uint(t) * uint(pc.K);
    if (pc.mode == 1 || pc.mode == 2) {
        for (int j = j0; j < j1; j++)
            X[base + uint(j)] = pc.mode == 1 ? round_f16(X[base + uint(j)])
                                             : round_bf16(X[base + uint(j)]);
        return;
    }
    if (pc.mode != 3)
        return;
    float amax = 0.0, mx = 0.0;
    for (int j = j0; j < j1; j++) {
        float v = X[base + uint(j)];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (amax == 0.0) {
        for (int j = j0; j < j1; j++)
            X[base + uint(j)] = 0.0;
        return;
    }
    precise float iscale = -127.0 / mx;
    precise float d = 1.0 / iscale;
    for (int j = j0; j < j1; j++) {
        precise float q = roundEven(iscale * X[base + uint(j)]);
        X[base + uint(j)] = min(q, 127.0) * d;
    }
}
