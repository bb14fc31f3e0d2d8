/* kernels/opencl/rmsnorm_bwd.cl — RMSNorm backward in two stages (in-order
 * queue: stage 1 reads the rstd of stage 0):
 *   rmsnorm_bwd_dx, per row t:    rstd[t] = r; with xh = x*r, gy = dY*g:
 *                                 dX += r * (gy - xh * mean(gy * xh))
 *   rmsnorm_bwd_dg, per column d: dg[d] += sum_t dY[t,d] * X[t,d] * rstd[t]
 * Sums in float, in index order inside one work-item. */
#define QV_RMSB_ARGS                                                           \
    __global const float *X, __global const float *g,                          \
        __global const float *dY, __global float *rstd, __global float *dX,   \
        __global float *dg, int T, int D, float eps

__kernel QV_REQD void rmsnorm_bwd_dx(QV_RMSB_ARGS)
{
    const int t = (int)get_global_id(0);
    if (t >= T)
        return;
    __global const float *x = X + (size_t)t * D;
    __global const float *dy = dY + (size_t)t * D;
    __global float *dx = dX + (size_t)t * D;
    float ss = 0.0f;
    for (int d = 0; d < D; d++)
        ss += x[d] * x[d];
    const float r = 1.0f / sqrt(ss / (float)D + eps);
    rstd[t] = r;
    float dot = 0.0f;
    for (int d = 0; d < D; d++)
        dot += (dy[d] * g[d]) * (x[d] * r);
    const float mean = dot / (float)D;
    for (int d = 0; d < D; d++)
        dx[d] += r * (dy[d] * g[d] - x[d] * r * mean);
}

__kernel QV_REQD void rmsnorm_bwd_dg(QV_RMSB_ARGS)
{
    const int d = (int)get_global_id(0);
    if (d >= D)
        return;
    float acc = 0.0f;
    for (int t = 0; t < T; t++)
        acc += dY[(size_t)t * D + d] * X[(size_t)t * D + d] * rstd[t];
    dg[d] += acc;
}
