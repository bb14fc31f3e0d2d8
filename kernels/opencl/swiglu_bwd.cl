/* kernels/opencl/swiglu_bwd.cl — dG = dH * U * f'(G), dU = dH * f(G), with
 * f = SiLU (act 0; f' = s * (1 + g * (1 - s)), s = sigmoid(g)) or squared
 * ReLU (act 1; f' = 2g for g > 0). One work-item per element. */
__kernel QV_REQD void swiglu_bwd(__global const float *G,
                                 __global const float *U,
                                 __global const float *dH, __global float *dG,
                                 __global float *dU, int n, int act)
{
    const int i = (int)get_global_id(0);
    if (i >= n)
        return;
    const float g = G[i], dh = dH[i];
    float f, df;
    if (act) {
        f = g > 0.0f ? g * g : 0.0f;
        df = g > 0.0f ? 2.0f * g : 0.0f;
    } else {
        f = g / (1.0f + exp(-g));
        const float s = 1.0f / (1.0f + exp(-g));
        df = s * (1.0f + g * (1.0f - s));
    }
    dG[i] = dh * U[i] * df;
    dU[i] = dh * f;
}
