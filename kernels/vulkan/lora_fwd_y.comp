#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/lora_fwd_y.comp — lora_fwd stage 1: Y(M,N) += scale * H(M,R) . B(N,R)^T.
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#include "gemm.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BA { float A[]; };
layout(binding = 2) readonly buffer BB { float B[]; };
layout(binding = 3) buffer BH { float H[]; };
layout(binding = 4) buffer BY { float Y[]; };
layout(push_constant) uniform PC { int M; int N; int K; int R; float scale; } pc;

float load_l(int m, int j) { return H[m * pc.R + j]; }
float load_r(int n, int j) { return B[n * pc.R + j]; }
void store_out(int m, int n, float v) { Y[m * pc.N + n] += pc.scale * v; }

void main()
{
    gemm_run(pc.M, pc.N, pc.R);
    gemm_store(pc.M, pc.N);
}
