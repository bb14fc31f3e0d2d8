/* kernels/opencl/rmsnorm.cl — Y = X * r * g per row, r = 1/sqrt(mean(X^2)
 * + eps). One work-item per row; the sum of squares in float, d ascending. */
__kernel QV_REQD void rmsnorm(__global const float *X, __global const float *g,
                              __global float *Y, int T, int D, float eps)
{
    const int t = (int)get_global_id(0);
    if (t >= T)
        return;
    __global const float *x = X + (size_t)t * D;
    __global float *y = Y + (size_t)t * D;
    float ss = 0.0f;
    for (int d = 0; d < D; d++)
        ss += x[d] * x[d];
    const float r = 1.0f / sqrt(ss / (float)D + eps);
    for (int d = 0; d < D; d++)
        y[d] = x[d] * r * g[d];
}
