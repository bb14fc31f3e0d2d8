/* kernels/opencl/reduce_partial.cl — out[c] = sum over X[c*1024 ..
 * c*1024+1023] (clipped to n) of X^2 (mode 0) or |X| (mode 1), in index
 * order in float, one work-item per chunk. The host adds the partials. */
#define QV_REDUCE_CHUNK 1024

__kernel QV_REQD void reduce_partial(__global const float *X,
                                     __global float *out, int n, int mode)
{
    const int c = (int)get_global_id(0);
    const int chunks = (n + QV_REDUCE_CHUNK - 1) / QV_REDUCE_CHUNK;
    if (c >= chunks)
        return;
    const int beg = c * QV_REDUCE_CHUNK;
    const int end = min(beg + QV_REDUCE_CHUNK, n);
    float acc = 0.0f;
    if (mode)
        for (int i = beg; i < end; i++)
            acc += fabs(X[i]);
    else
        for (int i = beg; i < end; i++)
            acc += X[i] * X[i];
    out[c] = acc;
}
