// kernels/vulkan/mm_common.glsl — the tunable parameters of the matmul-shaped
// kernels as specialization constants (constant_id i = param i of
// kernels/kernel.c's MM_PARAMS) and the derived tile sizes. Included first by
// every matmul-shaped stage.
//
// A work-group computes a ROWS x COLS block of the output; invocation
// (lx, ly) owns rows row0 + ly + i*WG_Y (i < TY) and columns
// col0 + lx + j*WG_X (j < TX), so neighbouring invocations touch
// neighbouring columns (coalesced loads and stores).

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;

layout(constant_id = 0) const int WG_X = 16;
layout(constant_id = 1) const int WG_Y = 1;
layout(constant_id = 2) const int TX = 1;
layout(constant_id = 3) const int TY = 1;
layout(constant_id = 4) const int LOCAL = 0;
layout(constant_id = 5) const int KT = 1;

const int ROWS = WG_Y * TY;   // output rows of one work-group
const int COLS = WG_X * TX;   // output columns of one work-group
const int NTHREADS = WG_X * WG_Y;
