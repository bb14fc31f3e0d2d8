// kernels/vulkan/ew_common.glsl — the parameters of the element-wise / per-row
// kernels of kernels/kernel_nn.c (EW_PARAMS) as specialization constants:
// constant_id 0 = WG_X (work-items per group), 1 = WG_Y (always 1).
// One invocation per element or row: gl_GlobalInvocationID includes the base
// of a chunked dispatch (vkCmdDispatchBase), and every stage guards the tail
// (global sizes are rounded up to the work-group size). Reductions run in a
// fixed order inside one invocation: results do not depend on WG_X.
//
// Long loops run in blocks of UNROLL iterations whose inner loop has a
// constant trip count (the compiler unrolls it) and a short tail, in the same
// element order. lavapipe (Mesa's gallivm) ends every loop of an invocation
// after 65535 iterations in total, all loops together (LP_MAX_TGSI_LOOP_
// ITERATIONS), silently: blocking keeps a row of up to ~1M elements whole.
const int UNROLL = 16;

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;

layout(constant_id = 0) const int WG_X = 64;
layout(constant_id = 1) const int WG_Y = 1;
