#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/lora_fwd_h.comp — lora_fwd stage 0: H(M,R) = X(M,K) . A(R,K)^T.
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#include "gemm.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BA { float A[]; };
layout(binding = 2) readonly buffer BB { float B[]; };
layout(binding = 3) buffer BH { float H[]; };
layout(binding = 4) buffer BY { float Y[]; };
layout(push_constant) uniform PC { int M; int N; int K; int R; float scale; } pc;

float load_l(int m, int k) { return X[m * pc.K + k]; }
float load_r(int j, int k) { return A[j * pc.K + k]; }
void store_out(int m, int j, float v) { H[m * pc.R + j] = v; }

void main()
{
    gemm_run(pc.M, pc.R, pc.K);
    gemm_store(pc.M, pc.R);
}
