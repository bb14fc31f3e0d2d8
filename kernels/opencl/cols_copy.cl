/* kernels/opencl/cols_copy.cl — dir 0: B[t, off+j] = A[t, j]; dir 1:
 * A[t, j] = B[t, off+j]; A is (T, W), B (T, Vw). One work-item per (t, j):
 * x along j, y along t. */
__kernel QV_REQD void cols_copy(__global float *A, __global float *B, int T,
                                int W, int Vw, int off, int dir)
{
    const int j = (int)get_global_id(0), t = (int)get_global_id(1);
    if (j >= W || t >= T)
        return;
    const size_t ia = (size_t)t * W + j, ib = (size_t)t * Vw + off + j;
    if (dir)
        A[ia] = B[ib];
    else
        B[ib] = A[ia];
}
