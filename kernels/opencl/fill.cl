/* kernels/opencl/fill.cl — Y[i] = value. One work-item per element. */
__kernel QV_REQD void fill(__global float *Y, int n, float value)
{
    const int i = (int)get_global_id(0);
    if (i < n)
        Y[i] = value;
}
