#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/f16_matmul.comp — f16_matmul: Y(M,N) = X(M,K) . W(N,K)^T, W in IEEE half read as
// uint words and unpackHalf2x16 (no 16-bit storage needed), f32 accumulation.
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.
// LOCAL=0 with K % 8 == 0 (every model shape; uniform over the dispatch):
// the rows are read as vectors, eight halves of W (one uvec4) and eight
// floats of X (two vec4) a load, through views of the same bindings; a
// CPU implementation (lavapipe) then issues a quarter of the loads.

#include "gemm.glsl"

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };  // two halves a word
layout(binding = 2) writeonly buffer BY { float Y[]; };
layout(binding = 0) readonly buffer BX4 { vec4 X4[]; };  // the same, 4 a load
layout(binding = 1) readonly buffer BW4 { uvec4 W4[]; }; // 8 halves a load
layout(push_constant) uniform PC { int M; int N; int K; } pc;

float load_l(int m, int k) { return X[m * pc.K + k]; }

float load_r(int n, int k)
{
    int idx = n * pc.K + k;
    vec2 h = unpackHalf2x16(W[idx >> 1]);
    return (idx & 1) != 0 ? h.y : h.x;
}

void store_out(int m, int n, float v) { Y[m * pc.N + n] = v; }

// gemm.glsl's LOCAL=0 tile (acc, rowc, colc) eight elements of K a step.
void direct8()
{
    const int row0 = int(gl_WorkGroupID.y) * ROWS + int(gl_LocalInvocationID.y);
    const int col0 = int(gl_WorkGroupID.x) * COLS + int(gl_LocalInvocationID.x);
    for (int i = 0; i < TY; i++)
        rowc[i] = min(row0 + i * WG_Y, pc.M - 1);
    for (int j = 0; j < TX; j++)
        colc[j] = min(col0 + j * WG_X, pc.N - 1);
    for (int i = 0; i < TY * TX; i++)
        acc[i] = 0.0;
    const int K8 = pc.K >> 3, K4 = pc.K >> 2;
    for (int kb = 0; kb < K8; kb++) {
        vec4 b0[TX], b1[TX];
        for (int j = 0; j < TX; j++) {
            uvec4 w = W4[colc[j] * K8 + kb];
            b0[j] = vec4(unpackHalf2x16(w.x), unpackHalf2x16(w.y));
            b1[j] = vec4(unpackHalf2x16(w.z), unpackHalf2x16(w.w));
        }
        for (int i = 0; i < TY; i++) {
            vec4 a0 = X4[rowc[i] * K4 + 2 * kb];
            vec4 a1 = X4[rowc[i] * K4 + 2 * kb + 1];
            for (int j = 0; j < TX; j++)
                acc[i * TX + j] += dot(a0, b0[j]) + dot(a1, b1[j]);
        }
    }
}

void main()
{
    if (LOCAL == 0 && (pc.K & 7) == 0)
        direct8();
    else
        gemm_run(pc.M, pc.N, pc.K);
    gemm_store(pc.M, pc.N);
}
