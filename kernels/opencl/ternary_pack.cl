/* kernels/opencl/ternary_pack.cl — shadow weights W (N,K) f32 to packed
 * ternary codes (16 a word, 2 bits each, weight j of the word at bits 2j):
 *   v = W * inv_scale, q = clamp(round_half_away(v), -1, 1), code q + 1;
 * padding weights past K are code 1. One work-item per word: x along the
 * words of a row, y along rows. The rounding is written as the reference
 * writes it (floor(|v| + 0.5) in float, one operation a statement so no
 * contraction changes a code). */
__kernel QV_REQD void ternary_pack(__global const float *W, __global uint *P,
                                   int N, int K, float inv_scale)
{
    const int wi = (int)get_global_id(0), n = (int)get_global_id(1);
    const int words = (K + 15) / 16;
    if (wi >= words || n >= N)
        return;
    uint word = 0;
    for (int j = 0; j < 16; j++) {
        const int k = wi * 16 + j;
        uint code = 1;
        if (k < K) {
            const float v = W[(size_t)n * K + k] * inv_scale;
            float r;
            if (v < 0.0f) {
                const float u = -v + 0.5f;
                r = -floor(u);
            } else {
                const float u = v + 0.5f;
                r = floor(u);
            }
            r = fmin(fmax(r, -1.0f), 1.0f);
            code = (uint)((int)r + 1);
        }
        word |= code << (2 * j);
    }
    P[(size_t)n * words + wi] = word;
}
