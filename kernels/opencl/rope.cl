/* kernels/opencl/rope.cl — rotary embedding, in place.
 * One work-item per (row t, pair x of the row): x along the H*hd/2 pairs,
 * y along rows; pair x is pair i = x % (hd/2) of head h = x / (hd/2), at
 * elements 2x and 2x+1 of the row (neox = 0), or h*hd + i and
 * h*hd + i + hd/2 (neox = 1). Position p = t % S:
 *   c = cs[p,i,0], s = sign * cs[p,i,1]
 *   (x0, x1) <- (x0*c - x1*s, x0*s + x1*c) */
__kernel QV_REQD void rope(__global float *X, __global const float *cs, int T,
                           int H, int hd, int S, int sign, int neox)
{
    const int x = (int)get_global_id(0), t = (int)get_global_id(1);
    const int half_hd = hd / 2;
    if (x >= H * half_hd || t >= T)
        return;
    const int i = x % half_hd, p = t % S;
    __global const float *cp = cs + ((size_t)p * half_hd + i) * 2;
    const float c = cp[0], s = (float)sign * cp[1];
    __global float *row = X + (size_t)t * H * hd;
    const size_t o0 = neox ? (size_t)(x / half_hd) * hd + i : 2 * (size_t)x;
    const size_t o1 = neox ? o0 + half_hd : o0 + 1;
    const float x0 = row[o0], x1 = row[o1];
    row[o0] = x0 * c - x1 * s;
    row[o1] = x0 * s + x1 * c;
}
