/* kernels/opencl/embed.cl — X[t,d] = E[ids[t], d], a zero row for an id
 * outside 0..V-1. One work-item per (t, d): x along d, y along t. */
__kernel QV_REQD void embed(__global const int *ids, __global const float *E,
                            __global float *X, int T, int D, int V)
{
    const int d = (int)get_global_id(0), t = (int)get_global_id(1);
    if (d >= D || t >= T)
        return;
    const int id = ids[t];
    X[(size_t)t * D + d] = id >= 0 && id < V ? E[(size_t)id * D + d] : 0.0f;
}
