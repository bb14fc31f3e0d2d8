/* kernels/opencl/cross_entropy.cl — softmax cross-entropy and its gradient,
 * one work-item per row t. With target y in 0..V-1:
 *   loss = logsumexp(z) - z[y], dz = gscale * (softmax(z) - onehot(y));
 * any other target (ignored, or out of range): loss 0, dz 0. Max, then the
 * sum of e^(z - max) in float, v ascending. */
__kernel QV_REQD void cross_entropy(__global const float *logits,
                                    __global const int *targets,
                                    __global float *loss,
                                    __global float *dlogits, int T, int V,
                                    float gscale)
{
    const int t = (int)get_global_id(0);
    if (t >= T)
        return;
    __global const float *z = logits + (size_t)t * V;
    __global float *dz = dlogits + (size_t)t * V;
    const int y = targets[t];
    if (y < 0 || y >= V) {
        loss[t] = 0.0f;
        for (int v = 0; v < V; v++)
            dz[v] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        mx = fmax(mx, z[v]);
    float sum = 0.0f;
    for (int v = 0; v < V; v++)
        sum += exp(z[v] - mx);
    const float lse = mx + log(sum);
    loss[t] = lse - z[y];
    for (int v = 0; v < V; v++) {
        const float p = exp(z[v] - lse);
        dz[v] = gscale * (v == y ? p - 1.0f : p);
    }
}
