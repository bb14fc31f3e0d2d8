/* kernels/opencl/adamw.cl — one AdamW step per element, in f32, in this
 * order:
 *   g = G * gscale; m1 = beta1*m1 + (1-beta1)*g; m2 = beta2*m2 + (1-beta2)*g*g
 *   P -= lr * ((m1/bc1) / (sqrt(m2/bc2) + eps) + wd * P)
 * bc1, bc2: the host's bias corrections 1 - beta^step. */
__kernel QV_REQD void adamw(__global float *P, __global const float *G,
                            __global float *m1, __global float *m2, int n,
                            float lr, float beta1, float beta2, float eps,
                            float wd, float bc1, float bc2, float gscale)
{
    const int i = (int)get_global_id(0);
    if (i >= n)
        return;
    const float g = G[i] * gscale;
    const float a = beta1 * m1[i] + (1.0f - beta1) * g;
    const float b = beta2 * m2[i] + (1.0f - beta2) * g * g;
    m1[i] = a;
    m2[i] = b;
    const float mh = a / bc1, vh = b / bc2;
    const float p = P[i];
    P[i] = p - lr * (mh / (sqrt(vh) + eps) + wd * p);
}
