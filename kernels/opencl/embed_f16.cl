/* kernels/opencl/embed_f16.cl — X[t,d] = E[ids[t], d] from an IEEE half
 * table (vload_half: no cl_khr_fp16 needed), a zero row for an id outside
 * 0..V-1. One work-item per (t, d): x along d, y along t. */
__kernel QV_REQD void embed_f16(__global const int *ids,
                                __global const half *E, __global float *X,
                                int T, int D, int V)
{
    const int d = (int)get_global_id(0), t = (int)get_global_id(1);
    if (d >= D || t >= T)
        return;
    const int id = ids[t];
    X[(size_t)t * D + d] =
        id >= 0 && id < V ? vload_half((size_t)id * D + d, E) : 0.0f;
}
