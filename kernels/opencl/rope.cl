/* kernels/opencl/rope.cl — rotary embedding of adjacent pairs, in place.
 * One work-item per (row t, pair x of the row): x along the H*hd/2 pairs,
 * y along rows; pair x is pair i = x % (hd/2) of head x / (hd/2), at
 * elements 2x and 2x+1 of the row. Position p = t % S:
 *   c = cs[p,i,0], s = sign * cs[p,i,1]
 *   (x0, x1) <- (x0*c - x1*s, x0*s + x1*c) */
__kernel QV_REQD void rope(__global float *X, __global const float *cs, int T,
                           int H, int hd, int S, int sign)
{
    const int x = (int)get_global_id(0), t = (int)get_global_id(1);
    const int half_hd = hd / 2;
    if (x >= H * half_hd || t >= T)
        return;
    const int i = x % half_hd, p = t % S;
    __global const float *cp = cs + ((size_t)p * half_hd + i) * 2;
    const float c = cp[0], s = (float)sign * cp[1];
    __global float *v = X + (size_t)t * H * hd + 2 * (size_t)x;
    const float x0 = v[0], x1 = v[1];
    v[0] = x0 * c - x1 * s;
    v[1] = x0 * s + x1 * c;
}
