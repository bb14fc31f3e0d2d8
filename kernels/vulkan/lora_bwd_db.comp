#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/lora_bwd_db.comp — lora_bwd stage 1: dB(N,R) = scale * dY(M,N)^T . H(M,R).
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#define L_ROW_CONTIG
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

float load_l(int n, int m) { return dY[m * pc.N + n]; }
float load_r(int j, int m) { return H[m * pc.R + j]; }
void store_out(int n, int j, float v) { dB[n * pc.R + j] = pc.scale * v; }

void main()
{
    gemm_run(pc.N, pc.R, pc.M);
    gemm_store(pc.N, pc.R);
}
