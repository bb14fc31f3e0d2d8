/* kernels/mem_tag.c — the names of the memory categories (backend.h),
 * apart from device.c so that readers of reports (train/bench_json.c and
 * its fuzz target) link without the backends. */
#include "kernels/backend.h"

const char *qv_mem_tag_name(qv_mem_tag t)
{
    static const char *names[QV_MEM_NTAGS] = {
        "other", "weights", "adapter", "gradients", "optimizer",
        "activations", "workspace",
    };
    return t < QV_MEM_NTAGS ? names[t] : "other";
}
