/* kernels/vulkan/vk_internal.h — the Vulkan backend's private types, shared
 * by its three files:
 *   vk_device.c  instance, enumeration, device info, device open / free
 *   vk_memory.c  buffers (direct mapping or staging), one-shot submits
 *   vk_launch.c  shader modules, pipelines per (stage, configuration),
 *                descriptor sets, dispatch, timestamps
 *
 * An autotuner visits hundreds of configurations and a driver's pipeline
 * can hold a megabyte of machine code, so the pipeline cache keeps the
 * VK_MAX_PIPES most recently used (launches are synchronous: an evicted
 * pipeline is never in flight).
 *
 * Ownership: a vk_ctx is owned by its qv_device (dev->ctx) and owns every
 * Vulkan object below it; the VkInstance is shared by all devices of one
 * enumeration and reference-counted (the last device_free destroys it).
 * A device is used from one thread at a time (the callers serialise), and
 * every launch or copy waits for its own fence, so work never overlaps. */
#ifndef QV_VK_INTERNAL_H
#define QV_VK_INTERNAL_H

#include <vulkan/vulkan.h>

#include "kernels/backend.h"

#define VK_MAX_KERNELS 32
#define VK_MAX_PIPES 128   /* cached pipelines; least recently used go */
#define VK_STAGING_BYTES ((VkDeviceSize)16 << 20) /* largest staging chunk */

typedef struct vk_instance {
    VkInstance inst;
    int refs; /* devices holding it */
} vk_instance;

/* Per kernel: the set layout and pipeline layout every stage shares, and the
 * stages' shader modules. Created on first launch of the kernel. */
typedef struct vk_kernel_slot {
    const qv_kernel_decl *k;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkShaderModule mod[QV_MAX_STAGES];
} vk_kernel_slot;

/* A compute pipeline: one stage of one kernel specialised to one config. */
typedef struct vk_pipe {
    const qv_kernel_decl *k;
    int stage;
    qv_config c;
    VkPipeline pipe;
    uint64_t last_use; /* vk_ctx.use_clock at the last launch using it */
} vk_pipe;

typedef struct vk_ctx {
    vk_instance *vi;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkPhysicalDeviceMemoryProperties mem;
    uint32_t max_groups[3];   /* maxComputeWorkGroupCount */
    int has_8bit_storage;     /* storageBuffer8BitAccess enabled */
    int timestamps;           /* queue family has timestampValidBits > 0 */
    uint64_t ts_mask;         /* valid bits of a timestamp */
    double ts_period_ns;      /* nanoseconds per timestamp tick */
    int direct_type;          /* DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT type
                                 to map buffers directly, or -1 */

    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkQueryPool queries;      /* 2 per stage, VK_NULL_HANDLE if no timer */
    VkDescriptorPool desc_pool;

    /* Staging buffer for devices whose buffers are not host visible. */
    VkBuffer stage_buf;
    VkDeviceMemory stage_mem;
    void *stage_map;
    VkDeviceSize stage_bytes;

    vk_kernel_slot slots[VK_MAX_KERNELS];
    vk_pipe *pipes;
    size_t n_pipes, cap_pipes;
    uint64_t use_clock;
} vk_ctx;

/* A buffer: its VkBuffer is the byte size rounded up to whole words. */
typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize bytes; /* rounded size */
    void *map;          /* host pointer when directly mapped, else NULL */
} vk_buf;

/* "VK_ERROR_DEVICE_LOST" */
const char *qv_vk_result_name(VkResult r);

/* Fails with QV_ERR_NOMEM for the out-of-memory results, QV_ERR_DEVICE
 * otherwise: "<id>: <call>(<what>) failed: <VkResult name>". */
qv_status qv_vk_fail(qv_err *err, const qv_device *dev, const char *call,
                     const char *what, VkResult r);

/* A memory type index allowed by bits with all of `want`, or -1. */
int qv_vk_memory_type(const vk_ctx *x, uint32_t bits,
                      VkMemoryPropertyFlags want);

/* Begins recording ctx->cmd (one-time submit). */
qv_status qv_vk_begin(qv_device *dev, const char *what, qv_err *err);
/* Ends, submits and waits for ctx->cmd. */
qv_status qv_vk_submit_wait(qv_device *dev, const char *what, qv_err *err);

/* vk_memory.c */
qv_status qv_vk_buf_alloc(qv_device *dev, size_t bytes, void **impl,
                          qv_err *err);
void qv_vk_buf_free(qv_device *dev, void *impl);
qv_status qv_vk_buf_write(qv_device *dev, void *impl, size_t off,
                          const void *src, size_t n, qv_err *err);
qv_status qv_vk_buf_read(qv_device *dev, void *impl, size_t off, void *dst,
                         size_t n, qv_err *err);
void qv_vk_staging_free(vk_ctx *x);

/* vk_launch.c */
qv_status qv_vk_launch(qv_device *dev, const qv_kernel_decl *k,
                       const qv_config *c, const qv_arg *args,
                       uint64_t *device_ns, qv_err *err);
qv_status qv_vk_synchronize(qv_device *dev, qv_err *err);
/* Destroys the pipelines, layouts and modules the launches created. */
void qv_vk_pipelines_free(vk_ctx *x);

#endif
