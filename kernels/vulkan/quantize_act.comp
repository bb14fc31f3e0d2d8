#version 450
#extension GL_EXT_shader_8bit_storage : require
// kernels/vulkan/quantize_act.comp — per-row int8 activation quantisation:
// amax = max(max|x|, 1e-5), s = 127/amax,
// q = clamp(round-half-away-from-zero(x*s), -128, 127), x_scale[m] = s.
// Maths: qv_ref_quantize_act. Needs storageBuffer8BitAccess (writes int8).
//
// Parameters (constant_id = param index of kernel.c's quantize_act):
//   WG_X invocations share one row: 1 runs a serial loop; >1 a strided
//        max then a tree reduction in shared memory (WG_X*WG_Y floats)
//   WG_Y rows per work-group
//   VEC  4: vec4 loads when K % 4 == 0 (scalar otherwise); 1: scalar

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 0) const int WG_X = 32;
layout(constant_id = 1) const int WG_Y = 1;
layout(constant_id = 2) const int VEC = 1;

layout(binding = 0) readonly buffer BX { float X[]; };
layout(binding = 0) readonly buffer BX4 { vec4 X4[]; };
layout(binding = 1) writeonly buffer BXQ { int8_t Xq[]; };
layout(binding = 2) writeonly buffer BXS { float x_scale[]; };
layout(push_constant) uniform PC { int M; int K; } pc;

const int RED = WG_X > 1 ? 1 : 0;
shared float red[RED * WG_X * WG_Y + 1 - RED];

// Returns int; the int8 conversion happens in the store so that only
// StorageBuffer8BitAccess (not the Int8 capability) is needed.
int quant(float x, float s)
{
    precise float v = x * s;
    precise float r = sign(v) * floor(abs(v) + 0.5);  // half away from zero
    return int(clamp(r, -128.0, 127.0));
}

void main()
{
    const int lx = int(gl_LocalInvocationID.x);
    const int ly = int(gl_LocalInvocationID.y);
    const int M = pc.M, K = pc.K;
    const int m = int(gl_WorkGroupID.y) * WG_Y + ly;
    const bool live = m < M;  // dead rows still take part in barriers
    const bool vec = VEC == 4 && (K & 3) == 0;
    const int base = m * K;

    float amax = 0.0;
    if (live) {
        if (vec) {
            for (int k4 = lx; k4 < (K >> 2); k4 += WG_X) {
                vec4 a = abs(X4[(base >> 2) + k4]);
                amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
            }
        } else {
            for (int k = lx; k < K; k += WG_X)
                amax = max(amax, abs(X[base + k]));
        }
    }
    if (WG_X > 1) {
        red[ly * WG_X + lx] = amax;
        barrier();
        for (int h = WG_X / 2; h > 0; h >>= 1) {
            if (lx < h)
                red[ly * WG_X + lx] = max(red[ly * WG_X + lx],
                                          red[ly * WG_X + lx + h]);
            barrier();
        }
        amax = red[ly * WG_X];
    }
    if (!live)
        return;
    amax = max(amax, 1e-5);
    const float s = 127.0 / amax;

    if (vec) {
        for (int k4 = lx; k4 < (K >> 2); k4 += WG_X) {
            vec4 v = X4[(base >> 2) + k4];
            int o = base + 4 * k4;
            Xq[o] = int8_t(quant(v.x, s));
            Xq[o + 1] = int8_t(quant(v.y, s));
            Xq[o + 2] = int8_t(quant(v.z, s));
            Xq[o + 3] = int8_t(quant(v.w, s));
        }
    } else {
        for (int k = lx; k < K; k += WG_X)
            Xq[base + k] = int8_t(quant(X[base + k], s));
    }
    if (lx == 0)
        x_scale[m] = s;
}
