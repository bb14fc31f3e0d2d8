/* kernels/opencl/swiglu.cl — H = f(G) * U element-wise, f = SiLU
 * (act 0: g / (1 + e^-g)) or squared ReLU (act 1). One work-item per
 * element. */
__kernel QV_REQD void swiglu(__global const float *G, __global const float *U,
                             __global float *H, int n, int act)
{
    const int i = (int)get_global_id(0);
    if (i >= n)
        return;
    const float g = G[i];
    const float f = act ? (g > 0.0f ? g * g : 0.0f) : g / (1.0f + exp(-g));
    H[i] = f * U[i];
}
