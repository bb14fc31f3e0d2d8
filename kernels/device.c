/* kernels/device.c — the generic half of the backend seam: device lists,
 * byte accounting, and the checks every launch goes through before a
 * backend sees it. Knows no backend's internals. */
#include "kernels/backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/embedded.h"
#include "common/hash.h"

qv_status qv_devlist_push(qv_devlist *list, qv_device *dev, qv_err *err)
{
    qv_device **grown = realloc(list->dev, (list->n + 1) * sizeof *grown);
    if (!grown)
        return qv_fail(err, QV_ERR_NOMEM, "device list: out of host memory");
    list->dev = grown;
    list->dev[list->n++] = dev;
    return QV_OK;
}

void qv_devlist_note(qv_devlist *list, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qv_append_vline(list->notes, sizeof list->notes, fmt, ap);
    va_end(ap);
}

#ifdef QV_NO_OPENCL
qv_status qv_opencl_enumerate(qv_devlist *list, qv_err *err)
{
    (void)err;
    qv_devlist_note(list, "opencl: this qvac was built without OpenCL (WITH_OPENCL=0)");
    return QV_OK;
}
#endif
#ifdef QV_NO_VULKAN
qv_status qv_vulkan_enumerate(qv_devlist *list, qv_err *err)
{
    (void)err;
    qv_devlist_note(list, "vulkan: this qvac was built without Vulkan (WITH_VULKAN=0)");
    return QV_OK;
}
#endif

qv_status qv_devlist_open(qv_devlist **out, qv_err *err)
{
    *out = NULL;
    qv_devlist *list = calloc(1, sizeof *list);
    if (!list)
        return qv_fail(err, QV_ERR_NOMEM, "device list: out of host memory");
    qv_status s;
    if ((s = qv_ref_enumerate(list, err)) ||
        (s = qv_opencl_enumerate(list, err)) ||
        (s = qv_vulkan_enumerate(list, err))) {
        qv_devlist_destroy(&list);
        return s;
    }
    for (size_t i = 0; i < list->n; i++)
        qv_device_fingerprint(&list->dev[i]->info);
    *out = list;
    return QV_OK;
}

void qv_devlist_destroy(qv_devlist **plist)
{
    if (!plist || !*plist)
        return;
    qv_devlist *list = *plist;
    for (size_t i = 0; i < list->n; i++) {
        qv_device *d = list->dev[i];
        if (d->iface->device_free)
            d->iface->device_free(d);
        free(d);
    }
    free(list->dev);
    free(list);
    *plist = NULL;
}

qv_device *qv_devlist_find(const qv_devlist *list, const char *id)
{
    if (!list || !id)
        return NULL;
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->dev[i]->info.id, id) == 0)
            return list->dev[i];
    return NULL;
}

void qv_device_fingerprint(qv_device_info *info)
{
    /* Fields joined with a separator that cannot occur in them, so
     * ("ab","c") and ("a","bc") hash differently. */
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s\x1f%s\x1f%s\x1f%s\x1f%u\x1f%llu",
                     info->backend, info->vendor, info->name, info->driver,
                     info->compute_units,
                     (unsigned long long)(info->is_cpu ? 0 : info->global_mem_bytes));
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof buf)
        n = (int)sizeof buf - 1;
    qv_hash64_hex(qv_hash64(buf, (size_t)n), info->fingerprint);
}

uint64_t qv_device_current_bytes(const qv_device *dev) { return dev->cur_bytes; }
uint64_t qv_device_peak_bytes(const qv_device *dev) { return dev->peak_bytes; }
void qv_device_reset_peak(qv_device *dev)
{
    dev->peak_bytes = dev->cur_bytes;
    memcpy(dev->tag_peak, dev->tag_cur, sizeof dev->tag_peak);
}

qv_mem_tag qv_device_set_tag(qv_device *dev, qv_mem_tag tag)
{
    qv_mem_tag old = dev->tag;
    dev->tag = tag < QV_MEM_NTAGS ? tag : QV_MEM_OTHER;
    return old;
}

qv_status qv_device_sync(qv_device *dev, qv_err *err)
{
    return dev->iface->synchronize ? dev->iface->synchronize(dev, err) : QV_OK;
}

uint64_t qv_device_memory_budget(const qv_device_info *info)
{
    uint64_t cap = info->global_mem_bytes;
    if (info->is_cpu) {
        /* its memory is the host's, which the run's host side needs too */
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        uint64_t half = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 2 : 0;
        if (half && (!cap || half < cap))
            cap = half;
    }
    return cap;
}

qv_status qv_buffer_new(qv_device *dev, size_t bytes, qv_buffer **out,
                        qv_err *err)
{
    *out = NULL;
    if (!dev)
        return qv_fail(err, QV_ERR_INVALID, "buffer: no device given");
    if (bytes == 0)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: cannot allocate a buffer of 0 bytes",
                       dev->info.id);
    if (dev->info.max_alloc_bytes && bytes > dev->info.max_alloc_bytes)
        return qv_fail(err, QV_ERR_NOMEM,
                       "%s: a buffer of %zu bytes exceeds the device's "
                       "largest allocation (%llu bytes); use smaller tensors "
                       "or another device", dev->info.id, bytes,
                       (unsigned long long)dev->info.max_alloc_bytes);
    /* the device's memory is a budget: a run that would pass it is refused
     * here, before the memory is spent (drivers that overcommit, and the
     * reference device's malloc, would otherwise grow until the machine
     * swaps) */
    uint64_t cap = qv_device_memory_budget(&dev->info);
    if (cap && (uint64_t)bytes > cap - (dev->cur_bytes < cap ? dev->cur_bytes : cap))
        return qv_fail(err, QV_ERR_NOMEM,
                       "%s: %.1f MiB more on top of the %.1f MiB allocated would pass "
                       "the device's %.1f MiB of memory (for a CPU device: half of the "
                       "machine's); lower --batch or --seq-len, "
                       "add --checkpoint-activations, or use a device with more memory",
                       dev->info.id, (double)bytes / 1048576.0,
                       (double)dev->cur_bytes / 1048576.0, (double)cap / 1048576.0);
    qv_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return qv_fail(err, QV_ERR_NOMEM, "%s: out of host memory",
                       dev->info.id);
    qv_status s = dev->iface->buf_alloc(dev, bytes, &b->impl, err);
    if (s) {
        free(b);
        return s;
    }
    b->dev = dev;
    b->bytes = bytes;
    b->tag = dev->tag;
    dev->cur_bytes += bytes;
    dev->tag_cur[b->tag] += bytes;
    dev->n_buffers++;
    if (dev->cur_bytes > dev->peak_bytes) {
        dev->peak_bytes = dev->cur_bytes;
        memcpy(dev->tag_peak, dev->tag_cur, sizeof dev->tag_peak);
    }
    *out = b;
    return QV_OK;
}

void qv_buffer_destroy(qv_buffer **pbuf)
{
    if (!pbuf || !*pbuf)
        return;
    qv_buffer *b = *pbuf;
    b->dev->iface->buf_free(b->dev, b->impl);
    b->dev->cur_bytes -= b->bytes;
    b->dev->tag_cur[b->tag] -= b->bytes;
    b->dev->n_buffers--;
    free(b);
    *pbuf = NULL;
}

static qv_status range_ok(const qv_buffer *b, size_t off, size_t n,
                          const char *what, qv_err *err)
{
    if (!b)
        return qv_fail(err, QV_ERR_INVALID, "%s: buffer is NULL", what);
    if (off > b->bytes || n > b->bytes - off)
        return qv_fail(err, QV_ERR_INVALID,
                       "%s: %s of %zu bytes at offset %zu is outside the "
                       "buffer of %zu bytes", b->dev->info.id, what, n, off,
                       b->bytes);
    return QV_OK;
}

qv_status qv_buffer_write(qv_buffer *b, size_t off, const void *src, size_t n,
                          qv_err *err)
{
    qv_status s = range_ok(b, off, n, "write", err);
    if (s || n == 0)
        return s;
    return b->dev->iface->buf_write(b->dev, b->impl, off, src, n, err);
}

qv_status qv_buffer_read(qv_buffer *b, size_t off, void *dst, size_t n,
                         qv_err *err)
{
    qv_status s = range_ok(b, off, n, "read", err);
    if (s || n == 0)
        return s;
    return b->dev->iface->buf_read(b->dev, b->impl, off, dst, n, err);
}

qv_status qv_launch(qv_device *dev, const char *name, const qv_config *c,
                    const qv_arg *args, int nargs, uint64_t *device_ns,
                    qv_err *err)
{
    if (!dev)
        return qv_fail(err, QV_ERR_INVALID, "launch: no device given");
    const qv_kernel_decl *k = qv_kernel_find(name);
    if (!k)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "%s: no kernel named '%s' (`qvac kernels` lists them)",
                       dev->info.id, name ? name : "(null)");
    qv_config def;
    if (!c) {
        qv_kernel_default_config(k, &def);
        c = &def;
    }
    qv_status s = qv_kernel_check_args(k, args, nargs, err);
    if (s)
        return s;
    for (int i = 0; i < nargs; i++)
        if (args[i].kind == QV_ARG_BUF && args[i].u.buf->dev != dev)
            return qv_fail(err, QV_ERR_INVALID,
                           "%s: buffer %s lives on %s, not on this device",
                           k->name, k->args[i].name,
                           args[i].u.buf->dev->info.id);
    if ((s = qv_kernel_check_config(k, c, &dev->info.limits, err)))
        return s;
    if (device_ns)
        *device_ns = 0;
    return dev->iface->launch(dev, k, c, args, device_ns, err);
}

/* XXH64 over several embedded files, each prefixed by its name, so moving
 * bytes between files changes the hash. */
static qv_status hash_files(const char *const *names, int n, const char *salt,
                            char out[17], qv_err *err)
{
    const qv_embedded_file *f[QV_MAX_STAGES + 1];
    size_t total = strlen(salt);
    for (int i = 0; i < n; i++) {
        if (!(f[i] = qv_embedded_find(names[i])))
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "no embedded kernel file '%s' (rebuild qvac)",
                           names[i]);
        total += strlen(names[i]) + 1 + f[i]->size;
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return qv_fail(err, QV_ERR_NOMEM, "source hash: out of host memory");
    size_t off = strlen(salt);
    memcpy(buf, salt, off);
    for (int i = 0; i < n; i++) {
        memcpy(buf + off, names[i], strlen(names[i]) + 1);
        off += strlen(names[i]) + 1;
        memcpy(buf + off, f[i]->data, f[i]->size);
        off += f[i]->size;
    }
    qv_hash64_hex(qv_hash64(buf, off), out);
    free(buf);
    return QV_OK;
}

qv_status qv_kernel_source_hash(const qv_device *dev, const qv_kernel_decl *k,
                                char out[17], qv_err *err)
{
    char names[QV_MAX_STAGES + 1][96];
    const char *ptr[QV_MAX_STAGES + 1];
    int n = 0;
    if (!strcmp(dev->info.backend, "opencl")) {
        snprintf(names[n++], sizeof names[0], "opencl/common.cl");
        snprintf(names[n++], sizeof names[0], "opencl/%s.cl", k->name);
    } else if (!strcmp(dev->info.backend, "vulkan")) {
        for (int s = 0; s < k->n_stages; s++)
            snprintf(names[n++], sizeof names[0], "vulkan/%s.spv",
                     k->stage_names[s]);
    }
    for (int i = 0; i < n; i++)
        ptr[i] = names[i];
    char salt[128];
    /* the reference has no embedded source: its code changes with qvac */
    snprintf(salt, sizeof salt, "%s\x1f%s\x1f%s", dev->info.backend, k->name,
             n ? "-cl-std=CL1.2" : QV_VERSION);
    return hash_files(ptr, n, salt, out, err);
}
