/* kernels/opencl/embed_bwd.cl — dE[v,d] += sum of dX[t,d] over the t with
 * ids[t] = v, t ascending. One work-item per (v, d) scans every id: no
 * atomics, and the sum's order is fixed. */
__kernel QV_REQD void embed_bwd(__global const int *ids,
                                __global const float *dX, __global float *dE,
                                int T, int D, int V)
{
    const int d = (int)get_global_id(0), v = (int)get_global_id(1);
    if (d >= D || v >= V)
        return;
    float acc = dE[(size_t)v * D + d];
    for (int t = 0; t < T; t++)
        if (ids[t] == v)
            acc += dX[(size_t)t * D + d];
    dE[(size_t)v * D + d] = acc;
}
