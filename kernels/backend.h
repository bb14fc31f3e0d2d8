/* kernels/backend.h — the compute seam.
 *
 * A backend (reference C, OpenCL, Vulkan) is a table of function pointers,
 * as in ggml-backend. Everything above kernels/ sees only qv_device and
 * qv_buffer and the functions below; nobody else knows which backend runs.
 *
 * The generic layer (kernels/device.c) owns what is the same for every
 * backend: argument and configuration checks against the kernel
 * declarations, and exact byte accounting (current and peak, per device).
 * A backend only moves bytes and runs code.
 */
#ifndef QV_BACKEND_H
#define QV_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/kernel.h"

typedef struct qv_device qv_device;

typedef struct qv_device_info {
    char id[32];         /* "ref", "opencl:0", "vulkan:0": stable across runs */
    char backend[16];    /* "ref", "opencl", "vulkan" */
    char vendor[128];
    char name[256];
    char driver[128];
    uint32_t vendor_id;
    uint32_t compute_units;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    qv_limits limits;
    int fp16;            /* native half arithmetic (cl_khr_fp16 / shaderFloat16) */
    int is_cpu;          /* runs on the host CPU (PoCL, lavapipe, ref) */
    char fingerprint[17];/* see qv_device_fingerprint */
} qv_device_info;

/* One backend's functions. Entries marked (optional) may be NULL. */
typedef struct qv_backend_iface {
    const char *name;
    /* Free the backend context of one device. */
    void (*device_free)(qv_device *dev);
    /* Allocate bytes of device memory; *impl receives the backend handle. */
    qv_status (*buf_alloc)(qv_device *dev, size_t bytes, void **impl,
                           qv_err *err);
    void (*buf_free)(qv_device *dev, void *impl);
    qv_status (*buf_write)(qv_device *dev, void *impl, size_t offset,
                           const void *src, size_t bytes, qv_err *err);
    qv_status (*buf_read)(qv_device *dev, void *impl, size_t offset,
                          void *dst, size_t bytes, qv_err *err);
    /* Runs every stage of kernel k with configuration c (already checked).
     * When device_ns is not NULL, waits for completion and writes the time
     * the device's own timer measured, summed over the stages. */
    qv_status (*launch)(qv_device *dev, const qv_kernel_decl *k,
                        const qv_config *c, const qv_arg *args,
                        uint64_t *device_ns, qv_err *err);
    /* Waits until all work submitted to dev has finished. */
    qv_status (*synchronize)(qv_device *dev, qv_err *err);
} qv_backend_iface;

/* What a buffer holds, for the memory breakdown of a run. Buffers take the
 * device's current tag when they are allocated (qv_device_set_tag). */
typedef enum {
    QV_MEM_OTHER,
    QV_MEM_WEIGHTS,     /* the frozen (or QAT shadow) base model */
    QV_MEM_ADAPTER,     /* LoRA parameters */
    QV_MEM_GRADIENTS,   /* gradients of what is trained */
    QV_MEM_OPTIMIZER,   /* optimizer state (AdamW moments) */
    QV_MEM_ACTIVATIONS, /* what the forward pass keeps for the backward */
    QV_MEM_WORKSPACE,   /* scratch reused by every layer */
    QV_MEM_NTAGS
} qv_mem_tag;

const char *qv_mem_tag_name(qv_mem_tag t);

struct qv_device {
    const qv_backend_iface *iface;
    void *ctx;             /* backend-owned */
    qv_device_info info;
    uint64_t cur_bytes;    /* device bytes held by live buffers */
    uint64_t peak_bytes;   /* highest cur_bytes since open / last reset */
    uint64_t n_buffers;
    qv_mem_tag tag;        /* tag given to new buffers */
    uint64_t tag_cur[QV_MEM_NTAGS];  /* live bytes per tag */
    uint64_t tag_peak[QV_MEM_NTAGS]; /* per tag: bytes live at the moment
                                        of the overall peak */
};

struct qv_buffer {
    qv_device *dev;
    size_t bytes;
    void *impl;
    qv_mem_tag tag;
};

/* ---- devices ------------------------------------------------------------ */

typedef struct qv_devlist {
    qv_device **dev;
    size_t n;
    char notes[1024]; /* why a backend reported no device, one per line */
} qv_devlist;

/* Opens every device: the reference first, then every OpenCL device of
 * every platform, then every Vulkan physical device. A backend that is not
 * available adds a line to notes instead of failing. */
qv_status qv_devlist_open(qv_devlist **out, qv_err *err);
void qv_devlist_destroy(qv_devlist **list);
/* Finds a device by id ("ref", "opencl:0", "vulkan:1"); NULL if absent. */
qv_device *qv_devlist_find(const qv_devlist *list, const char *id);

/* Stable hash of backend, vendor, name, driver version, compute units and
 * memory size. For CPU devices the memory is left out: PoCL derives it from
 * the host's free memory, which changes from run to run. */
void qv_device_fingerprint(qv_device_info *info);

/* Memory accounting: bytes of live buffers now, and the peak. */
uint64_t qv_device_current_bytes(const qv_device *dev);
uint64_t qv_device_peak_bytes(const qv_device *dev);
void qv_device_reset_peak(qv_device *dev);
/* Sets the tag of buffers allocated from now on; returns the previous. */
qv_mem_tag qv_device_set_tag(qv_device *dev, qv_mem_tag tag);

qv_status qv_device_sync(qv_device *dev, qv_err *err);

/* ---- buffers ------------------------------------------------------------ */

/* What buffers of a device may hold in all (qv_buffer_new refuses past it):
 * its global memory, and for a CPU device at most half the machine's
 * physical memory, which the host side of a run needs too. */
uint64_t qv_device_memory_budget(const qv_device_info *info);
qv_status qv_buffer_new(qv_device *dev, size_t bytes, qv_buffer **out,
                        qv_err *err);
void qv_buffer_destroy(qv_buffer **buf);
qv_status qv_buffer_write(qv_buffer *buf, size_t offset, const void *src,
                          size_t bytes, qv_err *err);
qv_status qv_buffer_read(qv_buffer *buf, size_t offset, void *dst,
                         size_t bytes, qv_err *err);

/* ---- kernels ------------------------------------------------------------ */

/* Launches kernel `name` on dev with configuration c (NULL: the default).
 * Checks the name, the argument list and the configuration first. */
qv_status qv_launch(qv_device *dev, const char *name, const qv_config *c,
                    const qv_arg *args, int nargs, uint64_t *device_ns,
                    qv_err *err);

/* Hash of what decides a kernel's code on dev's backend: the embedded
 * OpenCL source (common.cl + <kernel>.cl) and fixed build options, the
 * SPIR-V of every Vulkan stage, or the qvac version for the reference.
 * Autotune results are keyed by it: a changed kernel makes them stale. */
qv_status qv_kernel_source_hash(const qv_device *dev, const qv_kernel_decl *k,
                                char out[17], qv_err *err);

/* ---- backend constructors (used by qv_devlist_open) -------------------- */

/* Each appends its devices to list (growing it); ordinal numbering is the
 * backend's enumeration order. A missing runtime is a note, not an error. */
qv_status qv_ref_enumerate(qv_devlist *list, qv_err *err);
qv_status qv_opencl_enumerate(qv_devlist *list, qv_err *err);
qv_status qv_vulkan_enumerate(qv_devlist *list, qv_err *err);

/* Helpers for backends. */
qv_status qv_devlist_push(qv_devlist *list, qv_device *dev, qv_err *err);
void qv_devlist_note(qv_devlist *list, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
