#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/ternary_matmul_t.comp — ternary_matmul_t: dX(M,K) = w_scale * dY(M,N) . W(N,K),
// the packed ternary W (kernels/ternary.h) read transposed, f32 accumulation.
// Maths: kernels/ref/ref_kernels.c. Tiling: gemm.glsl.

#define R_COL_CONTIG
#include "gemm.glsl"

layout(binding = 0) readonly buffer BDY { float dY[]; };
layout(binding = 1) readonly buffer BW { uint W[]; };
layout(binding = 2) writeonly buffer BDX { float dX[]; };
layout(push_constant) uniform PC { int M; int N; int K; float w_scale; } pc;

float load_l(int m, int n) { return dY[m * pc.N + n]; }

// R(k, n) = W(n, k): code (bits 2*(k%16) of word k/16 of row n) minus one.
float load_r(int k, int n)
{
    int words = (pc.K + 15) >> 4;
    uint w = W[n * words + (k >> 4)];
    return float(int(bitfieldExtract(w, 2 * (k & 15), 2)) - 1);
}

void store_out(int m, int k, float v) { dX[m * pc.K + k] = v * pc.w_scale; }

// LOCAL=0: gemm.glsl's column-vector order; a step decodes one packed word
// into TX weights and multiplies them by TY gradients.
void direct_cv()
{
    gemm_cv_begin(pc.M, pc.K, true);
    const int words = (pc.K + 15) >> 4;
    const int wi = cv_jr >> 4, sh0 = 2 * (cv_jr & 15);
    for (int n = 0; n < pc.N; n++) {
        uint wv = W[n * words + wi] >> sh0;
        float b[TX];
        for (int c = 0; c < TX; c++)
            b[c] = float((wv >> (2 * c)) & 3u) - 1.0;
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
