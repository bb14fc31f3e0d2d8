#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/lora_bwd_dh.comp — lora_bwd stage 0: dH(M,R) = scale * dY(M,N) . B(N,R).
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

float load_l(int m, int n) { return dY[m * pc.N + n]; }
float load_r(int j, int n) { return B[n * pc.R + j]; }
void store_out(int m, int j, float v) { dH[m * pc.R + j] = pc.scale * v; }

void main()
{
    gemm_run(pc.M, pc.R, pc.N);
    gemm_store(pc.M, pc.R);
}
