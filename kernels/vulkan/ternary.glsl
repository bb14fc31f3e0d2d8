// kernels/vulkan/ternary.glsl — the packed ternary layout (kernels/ternary.h)
// and int8 activations read as packed uint words.
//
// W: weight k of a row in word k/16 at bits 2*(k%16), code = w + 1.
// Xq: int8, read four at a time from a uint view of the buffer (the Vulkan
// buffer is rounded up to whole words, so every word touched exists), which
// needs no 8-bit storage feature.

// sum_{t<16} x_t * w_t for 16 int8 x packed four to a word (x_t in byte
// t%4 of x[t/4]) and 16 ternary codes in w.
int ternary_dot16(uvec4 x, uint w)
{
    int s = 0;
    for (int q = 0; q < 4; q++) {
        int xw = int(x[q]);
        for (int b = 0; b < 4; b++) {
            int xv = bitfieldExtract(xw, 8 * b, 8);  // sign-extending
            int c = int(bitfieldExtract(w, 2 * (4 * q + b), 2)) - 1;
            s += xv * c;
        }
    }
    return s;
}

// The 4 bytes starting at byte offset `byte` of a word array, given the
// word holding `byte` (lo) and the next one (hi).
uint funnel_bytes(uint lo, uint hi, int byte)
{
    int sh = (byte & 3) * 8;
    return sh == 0 ? lo : (lo >> sh) | (hi << (32 - sh));
}

// Keeps the first n (0..4) bytes of a word, zeroes the rest.
uint keep_bytes(uint v, int n)
{
    return n >= 4 ? v : n <= 0 ? 0u : v & ((1u << (8 * n)) - 1u);
}
