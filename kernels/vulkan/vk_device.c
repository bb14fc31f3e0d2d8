/* kernels/vulkan/vk_device.c — the Vulkan backend's entry point
 * (qv_vulkan_enumerate): the shared, reference-counted VkInstance, one
 * qv_device per physical device with a compute queue ("vulkan:<ordinal>" in
 * enumeration order), its qv_device_info, and device_free. Also the helpers
 * every file of the backend uses (VkResult names, errors, one-shot submits).
 *
 * Works with lavapipe (Mesa's CPU driver) and real GPUs; on macOS the
 * portability enumeration extension makes MoltenVK visible. */
#define _DEFAULT_SOURCE /* sysconf's _SC_NPROCESSORS_ONLN */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/vulkan/vk_internal.h"

/* ---- helpers ------------------------------------------------------------ */

const char *qv_vk_result_name(VkResult r)
{
    switch (r) {
#define R(x) case x: return #x;
    R(VK_SUCCESS) R(VK_NOT_READY) R(VK_TIMEOUT) R(VK_EVENT_SET)
    R(VK_EVENT_RESET) R(VK_INCOMPLETE) R(VK_ERROR_OUT_OF_HOST_MEMORY)
    R(VK_ERROR_OUT_OF_DEVICE_MEMORY) R(VK_ERROR_INITIALIZATION_FAILED)
    R(VK_ERROR_DEVICE_LOST) R(VK_ERROR_MEMORY_MAP_FAILED)
    R(VK_ERROR_LAYER_NOT_PRESENT) R(VK_ERROR_EXTENSION_NOT_PRESENT)
    R(VK_ERROR_FEATURE_NOT_PRESENT) R(VK_ERROR_INCOMPATIBLE_DRIVER)
    R(VK_ERROR_TOO_MANY_OBJECTS) R(VK_ERROR_FORMAT_NOT_SUPPORTED)
    R(VK_ERROR_FRAGMENTED_POOL) R(VK_ERROR_UNKNOWN)
    R(VK_ERROR_OUT_OF_POOL_MEMORY) R(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    R(VK_ERROR_FRAGMENTATION) R(VK_ERROR_INVALID_SHADER_NV)
#undef R
    default: return "VK_ERROR_(unknown)";
    }
}

qv_status qv_vk_fail(qv_err *err, const qv_device *dev, const char *call,
                     const char *what, VkResult r)
{
    qv_status code = (r == VK_ERROR_OUT_OF_HOST_MEMORY ||
                      r == VK_ERROR_OUT_OF_DEVICE_MEMORY ||
                      r == VK_ERROR_OUT_OF_POOL_MEMORY)
                         ? QV_ERR_NOMEM
                         : QV_ERR_DEVICE;
    return qv_fail(err, code, "%s: %s(%s) failed: %s (%d)",
                   dev ? dev->info.id : "vulkan", call, what,
                   qv_vk_result_name(r), (int)r);
}

int qv_vk_memory_type(const vk_ctx *x, uint32_t bits,
                      VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < x->mem.memoryTypeCount; i++)
        if ((bits & (1u << i)) &&
            (x->mem.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

qv_status qv_vk_begin(qv_device *dev, const char *what, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    VkResult r = vkResetCommandBuffer(x->cmd, 0);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkResetCommandBuffer", what, r);
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    r = vkBeginCommandBuffer(x->cmd, &bi);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkBeginCommandBuffer", what, r);
    return QV_OK;
}

qv_status qv_vk_submit_wait(qv_device *dev, const char *what, qv_err *err)
{
    vk_ctx *x = dev->ctx;
    VkResult r = vkEndCommandBuffer(x->cmd);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkEndCommandBuffer", what, r);
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &x->cmd,
    };
    r = vkQueueSubmit(x->queue, 1, &si, x->fence);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkQueueSubmit", what, r);
    r = vkWaitForFences(x->dev, 1, &x->fence, VK_TRUE, UINT64_MAX);
    VkResult r2 = vkResetFences(x->dev, 1, &x->fence);
    if (r != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkWaitForFences", what, r);
    if (r2 != VK_SUCCESS)
        return qv_vk_fail(err, dev, "vkResetFences", what, r2);
    return QV_OK;
}

/* ---- instance ----------------------------------------------------------- */

static void instance_unref(vk_instance *vi)
{
    if (vi && --vi->refs <= 0) {
        vkDestroyInstance(vi->inst, NULL);
        free(vi);
    }
}

static int has_ext(const VkExtensionProperties *e, uint32_t n,
                   const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(e[i].extensionName, name) == 0)
            return 1;
    return 0;
}

/* VkInstance for API 1.1; VK_SUCCESS or the failing result. */
static VkResult instance_create(VkInstance *out)
{
    *out = VK_NULL_HANDLE;
    PFN_vkEnumerateInstanceVersion env =
        (PFN_vkEnumerateInstanceVersion)vkGetInstanceProcAddr(
            NULL, "vkEnumerateInstanceVersion");
    uint32_t loader = VK_API_VERSION_1_0;
    if (!env || env(&loader) != VK_SUCCESS ||
        loader < VK_API_VERSION_1_1)
        return VK_ERROR_INCOMPATIBLE_DRIVER;

    uint32_t n = 0;
    VkExtensionProperties *ext = NULL;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, NULL) == VK_SUCCESS &&
        n > 0) {
        ext = calloc(n, sizeof *ext);
        if (ext &&
            vkEnumerateInstanceExtensionProperties(NULL, &n, ext) != VK_SUCCESS)
            n = 0;
    }
    const char *names[1];
    uint32_t n_names = 0;
    VkInstanceCreateFlags flags = 0;
    if (ext && has_ext(ext, n, "VK_KHR_portability_enumeration")) {
        names[n_names++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }
    free(ext);

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "qvac",
        .applicationVersion = 1,
        .pEngineName = "qvac",
        .engineVersion = 1,
        .apiVersion = VK_API_VERSION_1_1,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledExtensionCount = n_names,
        .ppEnabledExtensionNames = names,
    };
    return vkCreateInstance(&ci, NULL, out);
}

/* ---- device info -------------------------------------------------------- */

static const char *vendor_name(uint32_t id)
{
    switch (id) {
    case 0x1002: return "AMD";
    case 0x10de: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x106b: return "Apple";
    case 0x13b5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x10005: return "Mesa";
    default: return NULL;
    }
}

static void driver_version_string(const VkPhysicalDeviceProperties *p,
                                  char *buf, size_t n)
{
    uint32_t v = p->driverVersion;
    if (p->vendorID == 0x10de)
        snprintf(buf, n, "%u.%u.%u.%u", (v >> 22) & 0x3ff, (v >> 14) & 0xff,
                 (v >> 6) & 0xff, v & 0x3f);
#ifdef _WIN32
    else if (p->vendorID == 0x8086)
        snprintf(buf, n, "%u.%u", v >> 14, v & 0x3fff);
#endif
    else
        snprintf(buf, n, "%u.%u.%u", VK_API_VERSION_MAJOR(v),
                 VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v));
}

/* What a physical device offers, read once. */
typedef struct phys_caps {
    VkPhysicalDeviceProperties props;
    uint32_t api;
    int ext_driver_props, ext_8bit, ext_f16i8, ext_portability;
    int ext_nv_sm, ext_amd_core;
    int f16, storage8;
    uint64_t max_alloc;
    uint32_t compute_units;
    char driver[128];
} phys_caps;

static void read_caps(VkPhysicalDevice pd, phys_caps *c)
{
    memset(c, 0, sizeof *c);
    vkGetPhysicalDeviceProperties(pd, &c->props);
    c->api = c->props.apiVersion;

    uint32_t n = 0;
    VkExtensionProperties *ext = NULL;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) ==
            VK_SUCCESS && n > 0) {
        ext = calloc(n, sizeof *ext);
        if (!ext || vkEnumerateDeviceExtensionProperties(pd, NULL, &n, ext) !=
                        VK_SUCCESS)
            n = 0;
    }
    int v12 = c->api >= VK_API_VERSION_1_2;
    c->ext_driver_props = v12 || has_ext(ext, n, "VK_KHR_driver_properties");
    c->ext_8bit = v12 || has_ext(ext, n, "VK_KHR_8bit_storage");
    c->ext_f16i8 = v12 || has_ext(ext, n, "VK_KHR_shader_float16_int8");
    c->ext_portability = has_ext(ext, n, "VK_KHR_portability_subset");
    c->ext_nv_sm = has_ext(ext, n, "VK_NV_shader_sm_builtins");
    c->ext_amd_core = has_ext(ext, n, "VK_AMD_shader_core_properties");
    free(ext);

    /* Properties through the 1.1 chain. */
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
    };
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
    };
    VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV,
    };
    VkPhysicalDeviceShaderCorePropertiesAMD amd = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD,
    };
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &m3,
    };
    if (c->ext_driver_props) {
        drv.pNext = p2.pNext;
        p2.pNext = &drv;
    }
    if (c->ext_nv_sm) {
        sm.pNext = p2.pNext;
        p2.pNext = &sm;
    }
    if (c->ext_amd_core) {
        amd.pNext = p2.pNext;
        p2.pNext = &amd;
    }
    vkGetPhysicalDeviceProperties2(pd, &p2);

    c->max_alloc = m3.maxMemoryAllocationSize;
    if (c->max_alloc == 0 ||
        c->max_alloc > c->props.limits.maxStorageBufferRange)
        c->max_alloc = c->props.limits.maxStorageBufferRange;

    if (c->ext_driver_props && drv.driverName[0])
        snprintf(c->driver, sizeof c->driver, "%.60s %.60s", drv.driverName,
                 drv.driverInfo);
    else
        driver_version_string(&c->props, c->driver, sizeof c->driver);

    /* Compute units, best effort: SMs, AMD CUs, CPU threads for a CPU
     * driver (lavapipe runs one worker per core), else 1. */
    c->compute_units = 1;
    if (c->ext_nv_sm && sm.shaderSMCount)
        c->compute_units = sm.shaderSMCount;
    else if (c->ext_amd_core && amd.computeUnitsPerShaderArray)
        c->compute_units = amd.shaderEngineCount *
                           amd.shaderArraysPerEngineCount *
                           amd.computeUnitsPerShaderArray;
    else if (c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
        long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (n_cpu > 0)
            c->compute_units = (uint32_t)n_cpu;
    }

    /* Features. */
    VkPhysicalDevice8BitStorageFeatures s8 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES,
    };
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
    };
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
    };
    if (c->ext_8bit) {
        s8.pNext = f2.pNext;
        f2.pNext = &s8;
    }
    if (c->ext_f16i8) {
        f16.pNext = f2.pNext;
        f2.pNext = &f16;
    }
    vkGetPhysicalDeviceFeatures2(pd, &f2);
    c->storage8 = c->ext_8bit && s8.storageBuffer8BitAccess;
    c->f16 = c->ext_f16i8 && f16.shaderFloat16;
}

static int compute_family(VkPhysicalDevice pd, uint32_t *fam,
                          uint32_t *ts_bits)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    if (n == 0)
        return 0;
    VkQueueFamilyProperties *q = calloc(n, sizeof *q);
    if (!q)
        return 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    int found = 0;
    for (uint32_t i = 0; i < n && !found; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && q[i].queueCount > 0) {
            *fam = i;
            *ts_bits = q[i].timestampValidBits;
            found = 1;
        }
    free(q);
    return found;
}

static void fill_info(qv_device_info *i, int ordinal, const phys_caps *c,
                      const VkPhysicalDeviceMemoryProperties *mem)
{
    const VkPhysicalDeviceLimits *l = &c->props.limits;
    snprintf(i->id, sizeof i->id, "vulkan:%d", ordinal);
    strcpy(i->backend, "vulkan");
    const char *vn = vendor_name(c->props.vendorID);
    if (vn)
        snprintf(i->vendor, sizeof i->vendor, "%s", vn);
    else
        snprintf(i->vendor, sizeof i->vendor, "0x%04x", c->props.vendorID);
    snprintf(i->name, sizeof i->name, "%s", c->props.deviceName);
    snprintf(i->driver, sizeof i->driver, "%s", c->driver);
    i->vendor_id = c->props.vendorID;
    i->compute_units = c->compute_units;
    i->is_cpu = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    uint64_t heap = 0;
    for (uint32_t h = 0; h < mem->memoryHeapCount; h++)
        if ((mem->memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            mem->memoryHeaps[h].size > heap)
            heap = mem->memoryHeaps[h].size;
    i->global_mem_bytes = heap;
    i->local_mem_bytes = l->maxComputeSharedMemorySize;
    i->max_alloc_bytes = c->max_alloc;
    i->limits.max_wg_size = l->maxComputeWorkGroupInvocations;
    for (int d = 0; d < 3; d++)
        i->limits.max_wg_dim[d] = l->maxComputeWorkGroupSize[d];
    i->limits.local_mem_bytes = l->maxComputeSharedMemorySize;
    i->fp16 = c->f16;
}

/* ---- device open / free ------------------------------------------------- */

static void vk_device_free(qv_device *d)
{
    if (!d || !d->ctx)
        return;
    vk_ctx *x = d->ctx;
    if (x->dev) {
        vkDeviceWaitIdle(x->dev);
        qv_vk_pipelines_free(x);
        qv_vk_staging_free(x);
        if (x->desc_pool)
            vkDestroyDescriptorPool(x->dev, x->desc_pool, NULL);
        if (x->queries)
            vkDestroyQueryPool(x->dev, x->queries, NULL);
        if (x->fence)
            vkDestroyFence(x->dev, x->fence, NULL);
        if (x->cmd_pool) /* frees x->cmd */
            vkDestroyCommandPool(x->dev, x->cmd_pool, NULL);
        vkDestroyDevice(x->dev, NULL);
    }
    instance_unref(x->vi);
    free(x);
    d->ctx = NULL;
}

static const qv_backend_iface vk_iface = {
    .name = "vulkan",
    .device_free = vk_device_free,
    .buf_alloc = qv_vk_buf_alloc,
    .buf_free = qv_vk_buf_free,
    .buf_write = qv_vk_buf_write,
    .buf_read = qv_vk_buf_read,
    .launch = qv_vk_launch,
    .synchronize = qv_vk_synchronize,
};

/* Picks the memory type buffers are mapped through directly: device local,
 * host visible and coherent, on the largest device-local heap (UMA devices,
 * lavapipe, resizable BAR). Small BAR windows are left to staging. */
static int pick_direct_type(const VkPhysicalDeviceMemoryProperties *m)
{
    VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                 VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                 VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint64_t big = 0;
    for (uint32_t h = 0; h < m->memoryHeapCount; h++)
        if ((m->memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            m->memoryHeaps[h].size > big)
            big = m->memoryHeaps[h].size;
    for (uint32_t t = 0; t < m->memoryTypeCount; t++)
        if ((m->memoryTypes[t].propertyFlags & want) == want &&
            m->memoryHeaps[m->memoryTypes[t].heapIndex].size == big)
            return (int)t;
    return -1;
}

/* Opens one device into d (d->ctx set on success, cleaned by the caller via
 * vk_device_free on failure). */
static qv_status device_open(qv_device *d, vk_instance *vi,
                             VkPhysicalDevice pd, const phys_caps *c,
                             uint32_t fam, uint32_t ts_bits, qv_err *err)
{
    vk_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of host memory",
                       d->info.id);
    d->ctx = x;
    x->vi = vi;
    vi->refs++;
    x->phys = pd;
    x->qfam = fam;
    vkGetPhysicalDeviceMemoryProperties(pd, &x->mem);
    for (int i = 0; i < 3; i++)
        x->max_groups[i] = c->props.limits.maxComputeWorkGroupCount[i];
    x->direct_type = pick_direct_type(&x->mem);
    x->timestamps = ts_bits > 0 && c->props.limits.timestampPeriod > 0.0f;
    x->ts_mask = ts_bits >= 64 ? UINT64_MAX : (((uint64_t)1 << ts_bits) - 1);
    x->ts_period_ns = c->props.limits.timestampPeriod;

    const char *exts[4];
    uint32_t n_ext = 0;
    if (c->storage8 && c->api < VK_API_VERSION_1_2)
        exts[n_ext++] = "VK_KHR_8bit_storage";
    if (c->ext_portability)
        exts[n_ext++] = "VK_KHR_portability_subset";

    VkPhysicalDevice8BitStorageFeatures s8 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES,
        .storageBuffer8BitAccess = VK_TRUE,
    };
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = c->storage8 ? &s8 : NULL,
    };
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = fam,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
        .enabledExtensionCount = n_ext,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateDevice(pd, &di, NULL, &x->dev);
    if (r != VK_SUCCESS) {
        x->dev = VK_NULL_HANDLE;
        return qv_vk_fail(err, d, "vkCreateDevice", c->props.deviceName, r);
    }
    x->has_8bit_storage = c->storage8;
    vkGetDeviceQueue(x->dev, fam, 0, &x->queue);

    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = fam,
    };
    if ((r = vkCreateCommandPool(x->dev, &pi, NULL, &x->cmd_pool)))
        return qv_vk_fail(err, d, "vkCreateCommandPool", "device", r);
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = x->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    if ((r = vkAllocateCommandBuffers(x->dev, &ai, &x->cmd)))
        return qv_vk_fail(err, d, "vkAllocateCommandBuffers", "device", r);
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((r = vkCreateFence(x->dev, &fi, NULL, &x->fence)))
        return qv_vk_fail(err, d, "vkCreateFence", "device", r);
    if (x->timestamps) {
        VkQueryPoolCreateInfo qpi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = 2 * QV_MAX_STAGES,
        };
        if ((r = vkCreateQueryPool(x->dev, &qpi, NULL, &x->queries)))
            return qv_vk_fail(err, d, "vkCreateQueryPool", "device", r);
    }
    /* One launch uses one set (every stage of a kernel shares the layout);
     * the pool is reset after each launch. */
    VkDescriptorPoolSize ps = {
        .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = QV_MAX_ARGS,
    };
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = 1,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    if ((r = vkCreateDescriptorPool(x->dev, &dpi, NULL, &x->desc_pool)))
        return qv_vk_fail(err, d, "vkCreateDescriptorPool", "device", r);
    return QV_OK;
}

qv_status qv_vulkan_enumerate(qv_devlist *list, qv_err *err)
{
    static const char *no_dev =
        "vulkan: no device found (install a Vulkan driver, e.g. "
        "mesa-vulkan-drivers)";
    VkInstance inst;
    VkResult r = instance_create(&inst);
    if (r != VK_SUCCESS) {
        qv_devlist_note(list, "%s; vkCreateInstance: %s", no_dev,
                        qv_vk_result_name(r));
        return QV_OK;
    }
    vk_instance *vi = calloc(1, sizeof *vi);
    if (!vi) {
        vkDestroyInstance(inst, NULL);
        return qv_fail(err, QV_ERR_NOMEM, "vulkan: out of host memory");
    }
    vi->inst = inst;
    vi->refs = 1; /* held by this function until the end */

    uint32_t n = 0;
    VkPhysicalDevice *pds = NULL;
    r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r == VK_SUCCESS && n > 0) {
        pds = calloc(n, sizeof *pds);
        if (!pds) {
            instance_unref(vi);
            return qv_fail(err, QV_ERR_NOMEM, "vulkan: out of host memory");
        }
        r = vkEnumeratePhysicalDevices(inst, &n, pds);
        if (r == VK_INCOMPLETE)
            r = VK_SUCCESS;
    }
    if (r != VK_SUCCESS || n == 0) {
        qv_devlist_note(list, "%s", no_dev);
        free(pds);
        instance_unref(vi);
        return QV_OK;
    }

    qv_status s = QV_OK;
    int ordinal = 0;
    for (uint32_t p = 0; p < n && s == QV_OK; p++) {
        uint32_t fam = 0, ts_bits = 0;
        if (!compute_family(pds[p], &fam, &ts_bits))
            continue;
        /* The ordinal counts devices with a compute queue, so ids stay the
         * same whether or not a device opens. */
        int ord = ordinal++;
        phys_caps caps;
        read_caps(pds[p], &caps);
        if (caps.api < VK_API_VERSION_1_1) {
            qv_devlist_note(list, "vulkan:%d (%s): needs Vulkan 1.1, the "
                            "driver offers %u.%u; skipped", ord,
                            caps.props.deviceName,
                            VK_API_VERSION_MAJOR(caps.api),
                            VK_API_VERSION_MINOR(caps.api));
            continue;
        }
        qv_device *d = calloc(1, sizeof *d);
        if (!d) {
            s = qv_fail(err, QV_ERR_NOMEM, "vulkan: out of host memory");
            break;
        }
        d->iface = &vk_iface;
        fill_info(&d->info, ord, &caps, &(VkPhysicalDeviceMemoryProperties){0});
        qv_err e2 = {0};
        qv_status so = device_open(d, vi, pds[p], &caps, fam, ts_bits, &e2);
        if (so == QV_OK) {
            fill_info(&d->info, ord, &caps, &((vk_ctx *)d->ctx)->mem);
            so = qv_devlist_push(list, d, &e2);
            if (so == QV_ERR_NOMEM) {
                vk_device_free(d);
                free(d);
                s = qv_fail(err, so, "%s", e2.msg);
                break;
            }
        }
        if (so != QV_OK) {
            qv_devlist_note(list, "vulkan:%d (%s): cannot open: %s", ord,
                            caps.props.deviceName, e2.msg);
            vk_device_free(d);
            free(d);
        }
    }
    free(pds);
    instance_unref(vi); /* destroyed here unless a device holds it */
    return s;
}
