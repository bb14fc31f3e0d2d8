#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/lora_bwd_dx.comp — lora_bwd stage 3: dX(M,K) += dH(M,R) . A(R,K).
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#define R_COL_CONTIG
#include "gemm.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BA { float A[]; };
layout(binding = 2) readonly buffer BB { float B[]; };
layout(binding = 3) readonly buffer BH { float H[]; };
layout(binding = 4) readonly buffer BDY { float dY[]; };
layout(binding = 5) buffer BDH { float dH[]; };
layout(binding = 6) buffer BDA { float dA[]; };
layout(binding = 7) buffer BDB { float dB[]; };
layout(binding = 8) buffer BDX { float dX[]; };
layout(push_constant) uniform PC { int M; int N; int K; int R; float scale; } pc;

float load_l(int m, int j) { return dH[m * pc.R + j]; }
float load_r(int k, int j) { return A[j * pc.K + k]; }
void store_out(int m, int k, float v) { dX[m * pc.K + k] += v; }

void main()
{
    gemm_run(pc.M, pc.K, pc.R);
    gemm_store(pc.M, pc.K);
}
