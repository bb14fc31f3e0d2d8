#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/f16_matmul_t.comp — f16_matmul_t: dX(M,K) = dY(M,N) . W(N,K),
// the backward of f16_matmul through its input; W in IEEE half read as uint
// words and unpackHalf2x16 (no 16-bit storage needed), f32 accumulation.
// Maths: kernels/ref/ref_nn.c. Tiling: gemm.glsl.

#define R_COL_CONTIG
#include "gemm.glsl"

layout(binding = 0) readonly buffer BDY { float dY[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };  // two halves a word
layout(binding = 2) writeonly buffer BDX { float dX[]; };
layout(push_constant) uniform PC { int M; int N; int K; } pc;

float load_l(int m, int n) { return dY[m * pc.N + n]; }

// R(k, n) = W(n, k)
float load_r(int k, int n)
{
    int idx = n * pc.K + k;
    vec2 h = unpackHalf2x16(W[idx >> 1]);
    return (idx & 1) != 0 ? h.y : h.x;
}

void store_out(int m, int k, float v) { dX[m * pc.K + k] = v; }

// LOCAL=0: gemm.glsl's column-vector order; a step reads TX halves of a W
// row (pairs from one word when K is even and TX >= 2; rows narrower than
// TX one clamped half at a time) and multiplies them by TY gradients.
void direct_cv()
{
    gemm_cv_begin(pc.M, pc.K, false);
    const bool pairs = (pc.K & 1) == 0 && TX >= 2 && pc.K >= TX;
    for (int n = 0; n < pc.N; n++) {
        float b[TX];
        if (pairs) {
            for (int c = 0; c < TX; c += 2) {
                vec2 h = unpackHalf2x16(W[(n * pc.K + cv_jr + c) >> 1]);
                b[c] = h.x;
                b[c + 1] = h.y;
            }
        } else {
            for (int c = 0; c < TX; c++)
                b[c] = load_r(min(cv_jr + c, pc.K - 1), n);
        }
        for (int i = 0; i < TY; i++) {
            float a = dY[rowc[i] * pc.N + n];
            for (int c = 0; c < TX; c++)
                acc[i * TX + c] = fma(a, b[c], acc[i * TX + c]);
        }
    }
    gemm_cv_store(pc.M, pc.K);
}

void main()
{
    if (LOCAL == 0) {
        direct_cv();
        return;
    }
    gemm_run(pc.M, pc.K, pc.N);
    gemm_store(pc.M, pc.K);
}
