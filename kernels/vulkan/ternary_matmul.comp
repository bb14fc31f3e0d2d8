#version 450
#extension GL_GOOGLE_include_directive : require
// kernels/vulkan/ternary_matmul.comp — Y(M,N) = (Xq(M,K) . W(N,K)^T) / x_scale[m]
// * w_scale with int32 accumulation; Xq int8, W packed ternary (16 weights a
// word). Maths: qv_ref_ternary_matmul.
//
// The reduction runs over packed words of W (16 weights); KT counts words.
// LOCAL=0: operands straight from the buffers, the word loop unrolled KT deep.
// LOCAL=1: the group stages, per step of KT words, the ROWS x 16*KT bytes of
// Xq (as packed words) and the COLS x KT words of W in shared memory:
// ROWS*16*KT + COLS*4*KT bytes, kernel.c's tm_local bound.
// Bytes of Xq at k >= K are never used (masked to zero), so the result does
// not depend on the padding codes of W.
// LOCAL=0 decodes each row's 16 activations once per word (an aligned uvec4
// load when K % 16 == 0) and each column's 16 weights once per word, and
// multiplies them as float vec4 dot products: exact, since every product
// and partial sum is an integer below 2^24 (kernel.c caps K).

#include "mm_common.glsl"
#include "ternary.glsl"

layout(binding = 0) readonly buffer BXQ { uint Xq[]; };  // int8, 4 a word
layout(binding = 1) readonly buffer BXS { float x_scale[]; };
layout(binding = 2) readonly buffer BW { uint W[]; };
layout(binding = 3) writeonly buffer BY { float Y[]; };
layout(binding = 0) readonly buffer BXQ4 { uvec4 Xq4[]; };  // 16 a load
layout(push_constant) uniform PC { int M; int N; int K; float w_scale; } pc;

shared uint sX[LOCAL * ROWS * KT * 4 + 1 - LOCAL];
shared uint sW[LOCAL * COLS * KT + 1 - LOCAL];

int acc[TY * TX];
int rowc[TY];
int colc[TX];
int xwords;   // words in the Xq buffer
int rwords;   // packed words per row of W

// Bytes 4q .. 4q+3 of the 16 at (row m, packed word w), those at k >= K
// zeroed when `tail`.
uint load_xq4(int m, int w, int q, bool tail)
{
    int k = w * 16 + q * 4;
    int byte = m * pc.K + k;
    // Clamped: in the tail word, bytes past K (masked below) may lie past
    // the end of the buffer for the last row.
    int i0 = min(byte >> 2, xwords - 1);
    uint v = funnel_bytes(Xq[i0], Xq[min(i0 + 1, xwords - 1)], byte);
    return tail ? keep_bytes(v, pc.K - k) : v;
}

float facc[TY * TX];  // LOCAL=0: exact integer sums in float

vec4 bytes4(uint v)  // four sign-extended int8 as floats
{
    int x = int(v);
    return vec4(bitfieldExtract(x, 0, 8), bitfieldExtract(x, 8, 8),
                bitfieldExtract(x, 16, 8), bitfieldExtract(x, 24, 8));
}

void step_direct(int w, bool tail, bool aligned)
{
    vec4 xf[TY * 4];
    for (int i = 0; i < TY; i++) {
        uvec4 x;
        if (aligned)
            x = Xq4[(rowc[i] * pc.K + w * 16) >> 4];
        else
            for (int q = 0; q < 4; q++)
                x[q] = load_xq4(rowc[i], w, q, tail);
        for (int q = 0; q < 4; q++)
            xf[i * 4 + q] = bytes4(x[q]);
    }
    for (int j = 0; j < TX; j++) {
        uint wv = W[colc[j] * rwords + w];
        vec4 wf[4];
        for (int q = 0; q < 4; q++)
            wf[q] = vec4(float((wv >> (8 * q)) & 3u), float((wv >> (8 * q + 2)) & 3u),
                         float((wv >> (8 * q + 4)) & 3u), float((wv >> (8 * q + 6)) & 3u)) - 1.0;
        for (int i = 0; i < TY; i++)
            facc[i * TX + j] += (dot(xf[i * 4], wf[0]) + dot(xf[i * 4 + 1], wf[1])) +
                                (dot(xf[i * 4 + 2], wf[2]) + dot(xf[i * 4 + 3], wf[3]));
    }
}

void main()
{
    const int lx = int(gl_LocalInvocationID.x);
    const int ly = int(gl_LocalInvocationID.y);
    const int row0 = int(gl_WorkGroupID.y) * ROWS;
    const int col0 = int(gl_WorkGroupID.x) * COLS;
    const int M = pc.M, N = pc.N, K = pc.K;
    xwords = int((uint(M * K) + 3u) >> 2);  // M*K < 2^31
    rwords = (K + 15) >> 4;
    const int full = K >> 4;  // words wholly inside K

    for (int i = 0; i < TY * TX; i++)
        acc[i] = 0;

    if (LOCAL == 0) {
        for (int i = 0; i < TY; i++)
            rowc[i] = min(row0 + ly + i * WG_Y, M - 1);
        for (int j = 0; j < TX; j++)
            colc[j] = min(col0 + lx + j * WG_X, N - 1);
        for (int i = 0; i < TY * TX; i++)
            facc[i] = 0.0;
        const bool aligned = (K & 15) == 0;
        int w = 0;
        for (; w + KT <= full; w += KT)
            for (int u = 0; u < KT; u++)
                step_direct(w + u, false, aligned);
        for (; w < rwords; w++)
            step_direct(w, w >= full, false);
        for (int i = 0; i < TY * TX; i++)
            acc[i] = int(facc[i]);
    } else {
        const int tid = ly * WG_X + lx;
        for (int w0 = 0; w0 < rwords; w0 += KT) {
            // sX[(u*4 + q) * ROWS + rr]: bytes 4q.. of word w0+u, row row0+rr.
            for (int e = tid; e < ROWS * KT * 4; e += NTHREADS) {
                int rr = e / (KT * 4), uq = e - rr * (KT * 4);
                int m = row0 + rr, w = w0 + (uq >> 2);
                uint v = 0u;
                if (m < M && w < rwords)
                    v = load_xq4(m, w, uq & 3, w >= full);
                sX[uq * ROWS + rr] = v;
            }
            // sW[u * COLS + cc] = word w0+u of row col0+cc (zero weights
            // outside).
            for (int e = tid; e < COLS * KT; e += NTHREADS) {
                int cc = e / KT, u = e - cc * KT;
                uint v = 0x55555555u;
                if (col0 + cc < N && w0 + u < rwords)
                    v = W[(col0 + cc) * rwords + w0 + u];
                sW[u * COLS + cc] = v;
            }
            barrier();
            for (int u = 0; u < KT; u++) {
                uvec4 x[TY];
                for (int i = 0; i < TY; i++)
                    for (int q = 0; q < 4; q++)
                        x[i][q] = sX[(u * 4 + q) * ROWS + ly + i * WG_Y];
                for (int j = 0; j < TX; j++) {
                    uint wv = sW[u * COLS + lx + j * WG_X];
                    for (int i = 0; i < TY; i++)
                        acc[i * TX + j] += ternary_dot16(x[i], wv);
                }
            }
            barrier();
        }
    }

    for (int i = 0; i < TY; i++) {
        int m = row0 + ly + i * WG_Y;
        if (m >= M)
            continue;
        float inv = x_scale[m];
        for (int j = 0; j < TX; j++) {
            int n = col0 + lx + j * WG_X;
            if (n < N)
                Y[m * N + n] = float(acc[i * TX + j]) / inv * pc.w_scale;
        }
    }
}
