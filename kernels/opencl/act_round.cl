/* kernels/opencl/act_round.cl — the activation rounding of llama.cpp's CPU
 * matmuls, in place on X (T, K): mode 1 rounds to IEEE half, 2 to bfloat16
 * (both to nearest, ties to even), 3 quantises each block of 256 to q8_K
 * (iscale = -127 / the signed value of largest magnitude, the first one
 * met; codes rint(iscale * x) clamped at 127; x = code / iscale). One
 * work-item per (row, block of 256): x along blocks, y along rows. Maths:
 * kernels/ref/ref_nn.c. */
static float qv_round_f16(float x)
{
    uint u = as_uint(x), a = u & 0x7fffffffu, sign = u & 0x80000000u;
    if (a >= 0x7f800000u)
        return x;
    if (a >= 0x477ff000u)
        return as_float(sign | 0x7f800000u);
    if (a < 0x38800000u)
        return copysign(rint(fabs(x) * 16777216.0f) * (1.0f / 16777216.0f), x);
    a = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    return as_float(sign | a);
}

static float qv_round_bf16(float x)
{
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return as_float(u | 0x00400000u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return as_float(u);
}

__kernel QV_REQD void act_round(__global float *X, int T, int K, int mode)
{
    const int b = (int)get_global_id(0), t = (int)get_global_id(1);
    const int j0 = b * 256;
    if (j0 >= K || t >= T)
        return;
    const int j1 = min(K, j0 + 256);
    __global float *x = X + (size_t)t * K;
    if (mode == 1 || mode == 2) {
        for (int j = j0; j < j1; j++)
            x[j] = mode == 1 ? qv_round_f16(x[j]) : qv_round_bf16(x[j]);
        return;
    }
    if (mode != 3)
        return;
    float amax = 0.0f, mx = 0.0f;
    for (int j = j0; j < j1; j++) {
        const float ax = fabs(x[j]);
        if (ax > amax) {
            amax = ax;
            mx = x[j];
        }
    }
    if (amax == 0.0f) {
        for (int j = j0; j < j1; j++)
            x[j] = 0.0f;
        return;
    }
    const float iscale = -127.0f / mx, d = 1.0f / iscale;
    for (int j = j0; j < j1; j++)
        x[j] = fmin(rint(iscale * x[j]), 127.0f) * d;
}
