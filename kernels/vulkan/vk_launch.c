/* kernels/vulkan/vk_launch.c — running kernels on a Vulkan device.
 *
 * Per kernel (created on first launch, kept in the device context): one
 * descriptor-set layout with buffer argument j at binding j of set 0, a
 * push-constant range holding the scalar arguments (4 bytes each, in
 * declaration order), and one shader module per stage from the embedded
 * SPIR-V "vulkan/<stage>.spv". Per (stage, configuration): one compute
 * pipeline with the configuration as specialization constants (param i is
 * constant_id i), cached (the VK_MAX_PIPES most recently used).
 *
 * A launch records one command buffer: per stage bind, push, dispatch, with
 * a compute-to-compute barrier between stages and timestamps around each
 * dispatch; then submits it and waits on the fence (launches are
 * synchronous), and resets the descriptor pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/embedded.h"
#include "kernels/vulkan/vk_internal.h"

static int n_buffer_args(const qv_kernel_decl *k)
{
    int n = 0;
    for (int i = 0; i < k->n_args; i++)
        n += k->args[i].kind == QV_ARG_BUF;
    return n;
}

static void slot_clear(vk_ctx *x, vk_kernel_slot *s)
{
    for (int i = 0; i < QV_MAX_STAGES; i++)
        if (s->mod[i])
            vkDestroyShaderModule(x->dev, s->mod[i], NULL);
    if (s->layout)
        vkDestroyPipelineLayout(x->dev, s->layout, NULL);
    if (s->dsl)
        vkDestroyDescriptorSetLayout(x->dev, s->dsl, NULL);
    memset(s, 0, sizeof *s);
}

void qv_vk_pipelines_free(vk_ctx *x)
{
    if (!x || !x->dev)
        return;
    for (size_t i = 0; i < x->n_pipes; i++)
        vkDestroyPipeline(x->dev, x->pipes[i].pipe, NULL);
    free(x->pipes);
    x->pipes = NULL;
    x->n_pipes = x->cap_pipes = 0;
    for (int i = 0; i < VK_MAX_KERNELS; i++)
        slot_clear(x, &x->slots[i]);
}

/* Frees the kernel slot used least recently (by its pipelines' last use)
 * with its pipelines, for a process that runs more than VK_MAX_KERNELS
 * kernels. Launches are synchronous, so none of them is in flight. */
static vk_kernel_slot *evict_slot(vk_ctx *x)
{
    int victim = 0;
    uint64_t oldest = UINT64_MAX;
    for (int i = 0; i < VK_MAX_KERNELS; i++) {
        uint64_t last = 0;
        for (size_t p = 0; p < x->n_pipes; p++)
            if (x->pipes[p].k == x->slots[i].k && x->pipes[p].last_use > last)
                last = x->pipes[p].last_use;
        if (last < oldest) {
            oldest = last;
            victim = i;
        }
    }
    vk_kernel_slot *s = &x->slots[victim];
    for (size_t p = 0; p < x->n_pipes;)
        if (x->pipes[p].k == s->k) {
            vkDestroyPipeline(x->dev, x->pipes[p].pipe, NULL);
            x->pipes[p] = x->pipes[--x->n_pipes];
        } else {
            p++;
        }
    slot_clear(x, s);
    return s;
}

/* The layouts and modules of kernel k, created on first use (a slot used
 * least recently is freed when all VK_MAX_KERNELS are taken). */
static qv_status get_slot(qv_device *dev, const qv_kernel_decl *k,
                          vk_kernel_slot **out, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    vk_kernel_slot *s = NULL;
    for (int i = 0; i < VK_MAX_KERNELS; i++) {
        if (x->slots[i].k == k) {
            *out = &x->slots[i];
            return QV_OK;
        }
        if (!s && !x->slots[i].k)
            s = &x->slots[i];
    }
    if (!s)
        s = evict_slot(x);

    VkDescriptorSetLayoutBinding b[QV_MAX_ARGS];
    int nb = n_buffer_args(k);
    for (int j = 0; j < nb; j++)
        b[j] = (VkDescriptorSetLayoutBinding){
            .binding = (uint32_t)j,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = (uint32_t)nb,
        .pBindings = b,
    };
    VkResult r = vkCreateDescriptorSetLayout(x->dev, &dci, NULL, &s->dsl);
    if (r != VK_SUCCESS) {
        s->dsl = VK_NULL_HANDLE;
        return qv_vk_fail(err, dev, "vkCreateDescriptorSetLayout", k->name, r);
    }
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = 4u * (uint32_t)(k->n_args - nb),
    };
    VkPipelineLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &s->dsl,
        .pushConstantRangeCount = pcr.size ? 1 : 0,
        .pPushConstantRanges = &pcr,
    };
    r = vkCreatePipelineLayout(x->dev, &lci, NULL, &s->layout);
    if (r != VK_SUCCESS) {
        s->layout = VK_NULL_HANDLE;
        slot_clear(x, s);
        return qv_vk_fail(err, dev, "vkCreatePipelineLayout", k->name, r);
    }
    for (int st = 0; st < k->n_stages; st++) {
        char name[96];
        snprintf(name, sizeof name, "vulkan/%s.spv", k->stage_names[st]);
        const qv_embedded_file *f = qv_embedded_find(name);
        if (!f || f->size == 0 || f->size % 4) {
            slot_clear(x, s);
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "%s: no SPIR-V for stage %s of %s (%s is not "
                           "embedded; rebuild with glslc)", dev->info.id,
                           k->stage_names[st], k->name, name);
        }
        VkShaderModuleCreateInfo mci = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = f->size,
            .pCode = (const uint32_t *)(const void *)f->data,
        };
        r = vkCreateShaderModule(x->dev, &mci, NULL, &s->mod[st]);
        if (r != VK_SUCCESS) {
            s->mod[st] = VK_NULL_HANDLE;
            slot_clear(x, s);
            return qv_vk_fail(err, dev, "vkCreateShaderModule",
                              k->stage_names[st], r);
        }
    }
    s->k = k;
    *out = s;
    return QV_OK;
}

/* The pipeline of stage st of kernel k under configuration c. */
static qv_status get_pipe(qv_device *dev, const vk_kernel_slot *s, int st,
                          const qv_config *c, VkPipeline *out, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    const qv_kernel_decl *k = s->k;
    x->use_clock++;
    for (size_t i = 0; i < x->n_pipes; i++) {
        vk_pipe *p = &x->pipes[i];
        if (p->k == k && p->stage == st &&
            memcmp(p->c.v, c->v, sizeof(int) * (size_t)k->n_params) == 0) {
            p->last_use = x->use_clock;
            *out = p->pipe;
            return QV_OK;
        }
    }
    if (x->n_pipes >= VK_MAX_PIPES) {
        /* Evict the least recently used; the stages this launch already
         * holds were used just now, so they stay. */
        size_t lru = 0;
        for (size_t i = 1; i < x->n_pipes; i++)
            if (x->pipes[i].last_use < x->pipes[lru].last_use)
                lru = i;
        vkDestroyPipeline(x->dev, x->pipes[lru].pipe, NULL);
        x->pipes[lru] = x->pipes[--x->n_pipes];
    }
    if (x->n_pipes == x->cap_pipes) {
        size_t cap = x->cap_pipes ? 2 * x->cap_pipes : 32;
        vk_pipe *grown = realloc(x->pipes, cap * sizeof *grown);
        if (!grown)
            return qv_fail(err, QV_ERR_NOMEM, "%s: out of host memory",
                           dev->info.id);
        x->pipes = grown;
        x->cap_pipes = cap;
    }
    VkSpecializationMapEntry me[QV_MAX_PARAMS];
    int32_t data[QV_MAX_PARAMS];
    for (int i = 0; i < k->n_params; i++) {
        me[i] = (VkSpecializationMapEntry){
            .constantID = (uint32_t)i,
            .offset = 4u * (uint32_t)i,
            .size = 4,
        };
        data[i] = c->v[i];
    }
    VkSpecializationInfo si = {
        .mapEntryCount = (uint32_t)k->n_params,
        .pMapEntries = me,
        .dataSize = 4u * (size_t)k->n_params,
        .pData = data,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = s->mod[st],
            .pName = "main",
            .pSpecializationInfo = &si,
        },
        .layout = s->layout,
        /* launches past maxComputeWorkGroupCount use vkCmdDispatchBase */
        .flags = VK_PIPELINE_CREATE_DISPATCH_BASE_BIT,
    };
    VkPipeline p = VK_NULL_HANDLE;
    VkResult r = vkCreateComputePipelines(x->dev, VK_NULL_HANDLE, 1, &ci, NULL,
                                          &p);
    if (r != VK_SUCCESS) {
        if (r == VK_ERROR_OUT_OF_HOST_MEMORY ||
            r == VK_ERROR_OUT_OF_DEVICE_MEMORY)
            return qv_vk_fail(err, dev, "vkCreateComputePipelines",
                              k->stage_names[st], r);
        /* A driver that cannot build a configuration is a compile failure
         * of that configuration, not a broken device. */
        char cfg[256];
        qv_config_format(k, c, cfg, sizeof cfg);
        return qv_fail(err, QV_ERR_COMPILE,
                       "%s: vkCreateComputePipelines(%s) failed: %s [%s]",
                       dev->info.id, k->stage_names[st],
                       qv_vk_result_name(r), cfg);
    }
    x->pipes[x->n_pipes++] = (vk_pipe){
        .k = k, .stage = st, .c = *c, .pipe = p, .last_use = x->use_clock};
    *out = p;
    return QV_OK;
}

static uint64_t host_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void barrier(VkCommandBuffer cmd, VkPipelineStageFlags src,
                    VkAccessFlags src_access, VkPipelineStageFlags dst,
                    VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src_access,
        .dstAccessMask = dst_access,
    };
    vkCmdPipelineBarrier(cmd, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

qv_status qv_vk_launch(qv_device *dev, const qv_kernel_decl *k,
                       const qv_config *c, const qv_arg *args,
                       uint64_t *device_ns, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    qv_status s;

    /* int8 outputs are written through 8-bit storage (reads use words). */
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].kind == QV_ARG_BUF && k->args[i].elem == QV_T_I8 &&
            (k->args[i].access & QV_OUT) && !x->has_8bit_storage)
            return qv_fail(err, QV_ERR_UNSUPPORTED,
                           "%s: %s writes int8 and the device lacks "
                           "storageBuffer8BitAccess (VK_KHR_8bit_storage); "
                           "run it on another device", dev->info.id, k->name);

    /* Geometry first: nothing is recorded for a launch that cannot run.
     * Work-group counts beyond maxComputeWorkGroupCount are dispatched in
     * chunks with vkCmdDispatchBase (the shaders index by gl_WorkGroupID,
     * which includes the base), so long row counts still run. */
    uint32_t groups[QV_MAX_STAGES][2];
    for (int st = 0; st < k->n_stages; st++) {
        size_t global[2], local[2];
        k->grid(st, args, c, global, local);
        for (int d = 0; d < 2; d++) {
            size_t g = local[d] ? global[d] / local[d] : 0;
            if (g == 0 || g > UINT32_MAX || local[d] * g != global[d] ||
                x->max_groups[d] == 0)
                return qv_fail(err, QV_ERR_INVALID,
                               "%s: %s stage %s: global size %zu along %c is "
                               "not a positive multiple of the work-group "
                               "(%zu) within %u groups", dev->info.id,
                               k->name, k->stage_names[st], global[d],
                               "xy"[d], local[d], UINT32_MAX);
            groups[st][d] = (uint32_t)g;
        }
    }

    vk_kernel_slot *slot = NULL;
    if ((s = get_slot(dev, k, &slot, err)))
        return s;
    VkPipeline pipes[QV_MAX_STAGES];
    for (int st = 0; st < k->n_stages; st++)
        if ((s = get_pipe(dev, slot, st, c, &pipes[st], err)))
            return s;

    /* Descriptors and push constants. */
    VkDescriptorSet set;
    VkDescriptorSetAllocateInfo dai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = x->desc_pool,
        .descriptorSetCount = 1,
        .pSetLayouts = &slot->dsl,
    };
    VkResult r = vkAllocateDescriptorSets(x->dev, &dai, &set);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkAllocateDescriptorSets", k->name, r);
    VkDescriptorBufferInfo bi[QV_MAX_ARGS];
    VkWriteDescriptorSet wr[QV_MAX_ARGS];
    uint32_t push[QV_MAX_ARGS];
    uint32_t nb = 0, np = 0;
    for (int i = 0; i < k->n_args; i++) {
        if (args[i].kind == QV_ARG_BUF) {
            const vk_buf *b = args[i].u.buf->impl;
            bi[nb] = (VkDescriptorBufferInfo){
                .buffer = b->buf, .offset = 0, .range = VK_WHOLE_SIZE};
            wr[nb] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = set,
                .dstBinding = nb,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &bi[nb],
            };
            nb++;
        } else {
            memcpy(&push[np++], &args[i].u, 4); /* int32 or float bits */
        }
    }
    vkUpdateDescriptorSets(x->dev, nb, wr, 0, NULL);

    int timed = device_ns && x->timestamps;
    uint32_t nq = 2u * (uint32_t)k->n_stages;
    if ((s = qv_vk_begin(dev, k->name, err)))
        goto out;
    /* Writes of earlier launches, copies and the host before this one. */
    barrier(x->cmd,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_HOST_BIT,
            VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                VK_ACCESS_HOST_WRITE_BIT,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    if (timed)
        vkCmdResetQueryPool(x->cmd, x->queries, 0, nq);
    for (int st = 0; st < k->n_stages; st++) {
        vkCmdBindPipeline(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipes[st]);
        vkCmdBindDescriptorSets(x->cmd, VK_PIPELINE_BIND_POINT_COMPUTE,
                                slot->layout, 0, 1, &set, 0, NULL);
        if (np)
            vkCmdPushConstants(x->cmd, slot->layout,
                               VK_SHADER_STAGE_COMPUTE_BIT, 0, 4 * np, push);
        /* Written once everything before has left the compute stage, i.e.
         * when the previous stage has finished: the pair brackets this
         * dispatch alone. */
        if (timed)
            vkCmdWriteTimestamp(x->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                x->queries, 2u * (uint32_t)st);
        for (uint32_t y0 = 0; y0 < groups[st][1]; y0 += x->max_groups[1]) {
            uint32_t gy = groups[st][1] - y0;
            if (gy > x->max_groups[1])
                gy = x->max_groups[1];
            for (uint32_t x0 = 0; x0 < groups[st][0]; x0 += x->max_groups[0]) {
                uint32_t gx = groups[st][0] - x0;
                if (gx > x->max_groups[0])
                    gx = x->max_groups[0];
                if (x0 == 0 && y0 == 0)
                    vkCmdDispatch(x->cmd, gx, gy, 1);
                else
                    vkCmdDispatchBase(x->cmd, x0, y0, 0, gx, gy, 1);
            }
        }
        if (timed)
            vkCmdWriteTimestamp(x->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                x->queries, 2u * (uint32_t)st + 1);
        if (st + 1 < k->n_stages)
            barrier(x->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    VK_ACCESS_SHADER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    }
    /* Results visible to the host (mapped buffers) and to copies. */
    barrier(x->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_WRITE_BIT,
            VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT);

    /* Without device timestamps (timestampValidBits == 0 on the queue) the
     * host clock around submit-and-wait stands in for the device timer. */
    uint64_t t0 = host_ns();
    if ((s = qv_vk_submit_wait(dev, k->name, err)))
        goto out;
    uint64_t t1 = host_ns();

    if (device_ns) {
        if (!timed) {
            *device_ns = t1 - t0;
        } else {
            uint64_t ts[2 * QV_MAX_STAGES];
            r = vkGetQueryPoolResults(x->dev, x->queries, 0, nq, sizeof ts, ts,
                                      sizeof ts[0],
                                      VK_QUERY_RESULT_64_BIT |
                                          VK_QUERY_RESULT_WAIT_BIT);
            if (r != VK_SUCCESS) {
                s = qv_vk_fail(err, dev, "vkGetQueryPoolResults", k->name, r);
                goto out;
            }
            double ns = 0.0;
            for (int st = 0; st < k->n_stages; st++) {
                uint64_t ticks = ((ts[2 * st + 1] & x->ts_mask) -
                                  (ts[2 * st] & x->ts_mask)) & x->ts_mask;
                ns += (double)ticks * x->ts_period_ns;
            }
            *device_ns = (uint64_t)(ns + 0.5);
        }
    }
out:
    r = vkResetDescriptorPool(x->dev, x->desc_pool, 0);
    if (r != VK_SUCCESS && s == QV_OK)
        s = qv_vk_fail(err, dev, "vkResetDescriptorPool", k->name, r);
    return s;
}

qv_status qv_vk_synchronize(qv_device *dev, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    VkResult r = vkQueueWaitIdle(x->queue);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkQueueWaitIdle", "synchronize", r);
    return QV_OK;
}
