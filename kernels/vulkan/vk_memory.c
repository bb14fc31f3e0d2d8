/* kernels/vulkan/vk_memory.c — Vulkan buffers: storage buffers rounded up
 * to whole 4-byte words (int8 tensors of odd size; shaders read int8 as
 * packed words), in device-local memory. When that memory is also host
 * visible and coherent (lavapipe, UMA, resizable BAR) the buffer stays
 * mapped and reads / writes are memcpy; otherwise they go through a staging
 * buffer (owned by the device context, at most VK_STAGING_BYTES, copied in
 * chunks). New buffers are zero-filled, like the reference's calloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/vulkan/vk_internal.h"

static void buffer_destroy(vk_ctx *x, VkBuffer b, VkDeviceMemory m, int mapped)
{
    if (mapped)
        vkUnmapMemory(x->dev, m);
    if (b)
        vkDestroyBuffer(x->dev, b, NULL);
    if (m)
        vkFreeMemory(x->dev, m, NULL);
}

/* Creates a buffer of `bytes` bound to fresh memory of type index `type`
 * (tried in order: the first type in types[] that allocates). */
static VkResult buffer_create(vk_ctx *x, VkDeviceSize bytes,
                              VkBufferUsageFlags usage,
                              const VkMemoryPropertyFlags *wants, int n_wants,
                              VkBuffer *out_b, VkDeviceMemory *out_m,
                              VkMemoryPropertyFlags *out_flags,
                              const char **call)
{
    *out_b = VK_NULL_HANDLE;
    *out_m = VK_NULL_HANDLE;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = bytes,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    *call = "vkCreateBuffer";
    VkResult r = vkCreateBuffer(x->dev, &bi, NULL, out_b);
    if (r != VK_SUCCESS) {
        *out_b = VK_NULL_HANDLE;
        return r;
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(x->dev, *out_b, &req);
    *call = "vkAllocateMemory";
    r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    for (int i = 0; i < n_wants; i++) {
        int t = qv_vk_memory_type(x, req.memoryTypeBits, wants[i]);
        if (t < 0)
            continue;
        if (x->mem.memoryHeaps[x->mem.memoryTypes[t].heapIndex].size <
            req.size)
            continue;
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = (uint32_t)t,
        };
        r = vkAllocateMemory(x->dev, &ai, NULL, out_m);
        if (r == VK_SUCCESS) {
            *out_flags = x->mem.memoryTypes[t].propertyFlags;
            break;
        }
        *out_m = VK_NULL_HANDLE;
    }
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(x->dev, *out_b, NULL);
        *out_b = VK_NULL_HANDLE;
        return r;
    }
    *call = "vkBindBufferMemory";
    r = vkBindBufferMemory(x->dev, *out_b, *out_m, 0);
    if (r != VK_SUCCESS) {
        buffer_destroy(x, *out_b, *out_m, 0);
        *out_b = VK_NULL_HANDLE;
        *out_m = VK_NULL_HANDLE;
    }
    return r;
}

#define HOST_COHERENT \
    (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)

/* Makes sure the staging buffer holds at least min(want, VK_STAGING_BYTES)
 * bytes; returns its usable size in *have. */
static qv_status staging_get(qv_device *dev, VkDeviceSize want,
                             VkDeviceSize *have, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    if (want > VK_STAGING_BYTES)
        want = VK_STAGING_BYTES;
    if (x->stage_buf && x->stage_bytes >= want) {
        *have = x->stage_bytes;
        return QV_OK;
    }
    qv_vk_staging_free(x);
    VkDeviceSize bytes = (want + 0xffff) & ~(VkDeviceSize)0xffff; /* 64 KiB steps */
    if (bytes > VK_STAGING_BYTES)
        bytes = VK_STAGING_BYTES;
    const VkMemoryPropertyFlags wants[] = {
        HOST_COHERENT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, HOST_COHERENT};
    VkMemoryPropertyFlags flags = 0;
    const char *call = "";
    VkResult r = buffer_create(
        x, bytes,
        VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        wants, 2, &x->stage_buf, &x->stage_mem, &flags, &call);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, call, "staging buffer", r);
    r = vkMapMemory(x->dev, x->stage_mem, 0, VK_WHOLE_SIZE, 0, &x->stage_map);
    if (r != VK_SUCCESS) {
        x->stage_map = NULL;
        qv_vk_staging_free(x);
        return qv_vk_fail(err, dev, "vkMapMemory", "staging buffer", r);
    }
    x->stage_bytes = bytes;
    *have = bytes;
    return QV_OK;
}

void qv_vk_staging_free(vk_ctx *x)
{
    if (!x || !x->dev)
        return;
    buffer_destroy(x, x->stage_buf, x->stage_mem, x->stage_map != NULL);
    x->stage_buf = VK_NULL_HANDLE;
    x->stage_mem = VK_NULL_HANDLE;
    x->stage_map = NULL;
    x->stage_bytes = 0;
}

/* Copies between the staging buffer and b (to_device: staging -> b). */
static qv_status staged_copy(qv_device *dev, vk_buf *b, VkDeviceSize off,
                             VkDeviceSize n, int to_device, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    const char *what = to_device ? "buffer write" : "buffer read";
    qv_status s = qv_vk_begin(dev, what, err);
    if (s)
        return s;
    VkBufferCopy cp = {
        .srcOffset = to_device ? 0 : off,
        .dstOffset = to_device ? off : 0,
        .size = n,
    };
    /* Earlier kernels' writes before the copy; the copy before the host or
     * later kernels. */
    VkMemoryBarrier pre = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT |
                         VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT |
                         VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    vkCmdPipelineBarrier(x->cmd,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT |
                             VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &pre, 0, NULL,
                         0, NULL);
    if (to_device)
        vkCmdCopyBuffer(x->cmd, x->stage_buf, b->buf, 1, &cp);
    else
        vkCmdCopyBuffer(x->cmd, b->buf, x->stage_buf, 1, &cp);
    VkMemoryBarrier post = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT |
                         VK_ACCESS_SHADER_WRITE_BIT,
    };
    vkCmdPipelineBarrier(x->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT |
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         0, 1, &post, 0, NULL, 0, NULL);
    return qv_vk_submit_wait(dev, what, err);
}

qv_status qv_vk_buf_alloc(qv_device *dev, size_t bytes, void **impl,
                          qv_err *err)
{
    vk_ctx *x = dev->ctx;
    *impl = NULL;
    vk_buf *b = calloc(1, sizeof *b);
    if (!b)
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of host memory",
                       dev->info.id);
    b->bytes = ((VkDeviceSize)bytes + 3) & ~(VkDeviceSize)3;
    VkBufferUsageFlags usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                               VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                               VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    VkMemoryPropertyFlags wants[3];
    int n_wants = 0;
    if (x->direct_type >= 0)
        wants[n_wants++] = x->mem.memoryTypes[x->direct_type].propertyFlags;
    wants[n_wants++] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    wants[n_wants++] = HOST_COHERENT; /* last resort: host memory */
    VkMemoryPropertyFlags flags = 0;
    const char *call = "";
    VkResult r = buffer_create(x, b->bytes, usage, wants, n_wants, &b->buf,
                               &b->mem, &flags, &call);
    if (r != VK_SUCCESS) {
        free(b);
        char what[64];
        snprintf(what, sizeof what, "%zu bytes", bytes);
        return qv_vk_fail(err, dev, call, what, r);
    }
#ifdef QV_VK_TEST_STAGING /* test build: exercise the staging path */
    flags &= ~(VkMemoryPropertyFlags)HOST_COHERENT;
#endif
    if ((flags & HOST_COHERENT) == HOST_COHERENT) {
        r = vkMapMemory(x->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
        if (r != VK_SUCCESS) {
            buffer_destroy(x, b->buf, b->mem, 0);
            free(b);
            return qv_vk_fail(err, dev, "vkMapMemory", "buffer", r);
        }
        memset(b->map, 0, (size_t)b->bytes);
    } else {
        qv_status s = qv_vk_begin(dev, "buffer fill", err);
        if (s == QV_OK) {
            vkCmdFillBuffer(x->cmd, b->buf, 0, VK_WHOLE_SIZE, 0);
            VkMemoryBarrier post = {
                .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                .dstAccessMask = VK_ACCESS_SHADER_READ_BIT |
                                 VK_ACCESS_SHADER_WRITE_BIT |
                                 VK_ACCESS_TRANSFER_READ_BIT |
                                 VK_ACCESS_TRANSFER_WRITE_BIT,
            };
            vkCmdPipelineBarrier(x->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                 VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                                     VK_PIPELINE_STAGE_TRANSFER_BIT,
                                 0, 1, &post, 0, NULL, 0, NULL);
            s = qv_vk_submit_wait(dev, "buffer fill", err);
        }
        if (s) {
            buffer_destroy(x, b->buf, b->mem, 0);
            free(b);
            return s;
        }
    }
    *impl = b;
    return QV_OK;
}

void qv_vk_buf_free(qv_device *dev, void *impl)
{
    vk_buf *b = impl;
    if (!b)
        return;
    vk_ctx *x = dev->ctx;
    buffer_destroy(x, b->buf, b->mem, b->map != NULL);
    free(b);
}

qv_status qv_vk_buf_write(qv_device *dev, void *impl, size_t off,
                          const void *src, size_t n, qv_err *err)
{
    vk_buf *b = impl;
    if (b->map) {
        memcpy((char *)b->map + off, src, n);
        return QV_OK;
    }
    vk_ctx *x = dev->ctx;
    while (n > 0) {
        VkDeviceSize have = 0;
        qv_status s = staging_get(dev, n, &have, err);
        if (s)
            return s;
        size_t chunk = n < have ? n : (size_t)have;
        memcpy(x->stage_map, src, chunk);
        if ((s = staged_copy(dev, b, off, chunk, 1, err)))
            return s;
        src = (const char *)src + chunk;
        off += chunk;
        n -= chunk;
    }
    return QV_OK;
}

qv_status qv_vk_buf_read(qv_device *dev, void *impl, size_t off, void *dst,
                         size_t n, qv_err *err)
{
    vk_buf *b = impl;
    if (b->map) {
        memcpy(dst, (const char *)b->map + off, n);
        return QV_OK;
    }
    vk_ctx *x = dev->ctx;
    while (n > 0) {
        VkDeviceSize have = 0;
        qv_status s = staging_get(dev, n, &have, err);
        if (s)
            return s;
        size_t chunk = n < have ? n : (size_t)have;
        if ((s = staged_copy(dev, b, off, chunk, 0, err)))
            return s;
        memcpy(dst, x->stage_map, chunk);
        dst = (char *)dst + chunk;
        off += chunk;
        n -= chunk;
    }
    return QV_OK;
}
