/* common/file.h — whole files: written atomically (all of the new file or
 * none of it), or mapped read-only.
 *
 * Shared by the file formats (formats/gguf.c, formats/safetensors.c) so
 * that each says what it writes, not how a file is made durable. `what`
 * names the kind of file in messages ("GGUF", "safetensors"). */
#ifndef QV_COMMON_FILE_H
#define QV_COMMON_FILE_H

#include <stddef.h>

#include "common/status.h"

/* All n bytes to fd, or from it: short transfers and EINTR are retried.
 * 0, or -1 with errno set (EIO: the end of the file came first). */
int qv_write_all(int fd, const void *p, size_t n);
int qv_read_all(int fd, void *p, size_t n);

/* One piece of a file, written in order. */
typedef struct qv_file_part {
    const void *data;
    size_t n;
} qv_file_part;

/* Writes the parts one after another to "<path>.tmp", fsyncs it, renames
 * it over path and fsyncs the folder, so that path is either the old file
 * or the whole new one. On error path is untouched and the .tmp removed.
 * Errors: QV_ERR_IO naming the path, the step and the system's reason
 * (e.g. ENOSPC: "no space left on device — free some disk space and
 * retry"), QV_ERR_NOMEM, QV_ERR_INVALID (NULL arguments). */
qv_status qv_file_write_atomic(const char *path, const char *what,
                               const qv_file_part *parts, size_t n_parts,
                               qv_err *err);

/* Maps a regular file read-only (MAP_PRIVATE). *map is NULL for an empty
 * file. Errors: QV_ERR_NOT_FOUND (no such file), QV_ERR_IO (not a regular
 * file, cannot open / stat / map), QV_ERR_NOMEM; each names the path. */
qv_status qv_file_map(const char *path, const char *what, void **map,
                      size_t *len, qv_err *err);
/* Unmaps what qv_file_map mapped; safe on NULL. */
void qv_file_unmap(void *map, size_t len);

#endif
