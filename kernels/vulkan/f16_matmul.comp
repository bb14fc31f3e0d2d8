#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/f16_matmul.comp — f16_matmul: Y(M,N) = X(M,K) . W(N,K)^T, W in IEEE half read as
// uint words and unpackHalf2x16 (no 16-bit storage needed), f32 accumulation.
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#include "gemm.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };  // two halves a word
layout(binding = 2) writeonly buffer BY { float Y[]; };
layout(push_constant) uniform PC { int M; int N; int K; } pc;

float load_l(int m, int k) { return X[m * pc.K + k]; }

float load_r(int n, int k)
{
    int idx = n * pc.K + k;
    vec2 h = unpackHalf2x16(W[idx >> 1]);
    return (idx & 1) != 0 ? h.y : h.x;
}

void store_out(int m, int n, float v) { Y[m * pc.N + n] = v; }

void main()
{
    gemm_run(pc.M, pc.N, pc.K);
    gemm_store(pc.M, pc.N);
}
