#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/f32_matmul.comp — f32_matmul: C(M,N) [+]= op(A)(M,K) .
// op(B)(K,N). A is stored (M,K) when ta = 0 and (K,M) when ta = 1; B is
// stored (K,N) when tb = 0 and (N,K) when tb = 1; acc = 1 adds the product to
// C (C is not read when acc = 0). ta, tb and acc are push constants, so one
// pipeline serves every layout. Maths: kernels/ref/ref_nn.c. Tiling: gemm.glsl.

#include "gemm.glsl"

layout(binding = 0) readonly buffer BA { float A[]; };
layout(binding = 1) readonly buffer BB { float B[]; };
layout(binding = 2) buffer BC { float C[]; };
layout(push_constant) uniform PC {
    int M; int N; int K; int ta; int tb; int acc;
} pc;

float load_l(int m, int k)
{
    return pc.ta != 0 ? A[k * pc.M + m] : A[m * pc.K + k];
}

float load_r(int n, int k)
{
    return pc.tb != 0 ? B[n * pc.K + k] : B[k * pc.N + n];
}

void store_out(int m, int n, float v)
{
    int o = m * pc.N + n;
    if (pc.acc != 0)
        C[o] = C[o] + v;
    else
        C[o] = v;
}

void main()
{
    gemm_run(pc.M, pc.N, pc.K);
    gemm_store(pc.M, pc.N);
}
