/* kernels/opencl/quantize_act.cl — int8 activation quantisation per row:
 * amax = max(max|x|, 1e-5), s = 127/amax, q = clamp(round(x*s), -128, 127)
 * (round = half away from zero), x_scale[m] = s.
 * QV_WG_X work-items share a row (1: one serial loop per row; >1: strided
 * max, then a tree reduction in __local memory), QV_WG_Y rows a group,
 * QV_VEC = 4: float4 loads / char4 stores when K % 4 == 0. */
__kernel QV_REQD void quantize_act(__global const float *X,
                                   __global char *Xq,
                                   __global float *x_scale, int M, int K)
{
    const int lx = (int)get_local_id(0);
    const int m = (int)get_global_id(1);
    const int mm = min(m, M - 1); /* rows past M read a real row, write nothing */
    __global const float *row = X + mm * K;
    __global char *out = Xq + mm * K;
#if QV_VEC == 4
    const int vec = (K & 3) == 0;
#else
    const int vec = 0;
#endif
    float amax = 0.0f;
    if (vec) {
        for (int i = lx; i < K / 4; i += QV_WG_X) {
            float4 v = fabs(vload4(i, row));
            amax = fmax(amax, fmax(fmax(v.x, v.y), fmax(v.z, v.w)));
        }
    } else {
        for (int i = lx; i < K; i += QV_WG_X)
            amax = fmax(amax, fabs(row[i]));
    }
#if QV_WG_X > 1
    const int ly = (int)get_local_id(1);
    __local float red[QV_WG_Y][QV_WG_X];
    red[ly][lx] = amax;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = QV_WG_X / 2; s > 0; s >>= 1) {
        if (lx < s)
            red[ly][lx] = fmax(red[ly][lx], red[ly][lx + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    amax = red[ly][0];
#endif
    amax = fmax(amax, 1e-5f);
    const float s = 127.0f / amax;
    if (m >= M)
        return;
    if (vec) {
        for (int i = lx; i < K / 4; i += QV_WG_X) {
            float4 v = clamp(round(vload4(i, row) * s), -128.0f, 127.0f);
            vstore4(convert_char4(v), i, out);
        }
    } else {
        for (int i = lx; i < K; i += QV_WG_X)
            out[i] = (char)clamp(round(row[i] * s), -128.0f, 127.0f);
    }
    if (lx == 0)
        x_scale[m] = s;
}
