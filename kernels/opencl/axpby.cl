/* kernels/opencl/axpby.cl — Y = alpha*X + beta*Y; with beta = 0, Y is not
 * read (a copy into uninitialised memory is safe). One work-item per
 * element. */
__kernel QV_REQD void axpby(__global const float *X, __global float *Y, int n,
                            float alpha, float beta)
{
    const int i = (int)get_global_id(0);
    if (i >= n)
        return;
    Y[i] = beta == 0.0f ? alpha * X[i] : alpha * X[i] + beta * Y[i];
}
