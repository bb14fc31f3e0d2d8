/* common/file.c — see file.h. POSIX only: open/write/fsync/rename, mmap. */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* All n bytes through fd: written from p (out), or read into it. */
static int all_bytes(int fd, unsigned char *c, size_t n, int out)
{
    while (n) {
        size_t len = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = out ? write(fd, c, len) : read(fd, c, len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int qv_write_all(int fd, const void *p, size_t n)
{
    return all_bytes(fd, (unsigned char *)(uintptr_t)p, n, 1);
}

int qv_read_all(int fd, void *p, size_t n)
{
    return all_bytes(fd, p, n, 0);
}

/* fsyncs the folder holding path, so that a rename into it is durable.
 * Returns 0 or the errno. File systems that cannot sync a folder (EINVAL,
 * EROFS) count as done. */
static int sync_folder(const char *path)
{
    size_t plen = strlen(path);
    char *dir = malloc(plen + 1);
    if (!dir)
        return ENOMEM;
    memcpy(dir, path, plen + 1);
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = 0;
    if (dfd < 0 || (fsync(dfd) && errno != EINVAL && errno != EROFS))
        e = errno;
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return e;
}

qv_status qv_file_write_atomic(const char *path, const char *what,
                               const qv_file_part *parts, size_t n_parts,
                               qv_err *err)
{
    if (!path || !*path || !what || (!parts && n_parts))
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_file_write_atomic: NULL argument");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing '%s'", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    const char *step = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e = 0;
    if (fd < 0) {
        e = errno;
        goto fail_noclose;
    }
    step = "write";
    for (size_t i = 0; i < n_parts; ++i)
        if (parts[i].n && qv_write_all(fd, parts[i].data, parts[i].n))
            goto fail;
    step = "fsync";
    if (fsync(fd))
        goto fail;
    step = "close";
    if (close(fd)) {
        e = errno;
        fd = -1;
        goto fail_noclose;
    }
    fd = -1;
    step = "rename";
    if (rename(tmp, path)) {
        e = errno;
        goto fail_noclose;
    }
    free(tmp);
    e = sync_folder(path);
    if (e == ENOMEM)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing '%s'", path);
    if (e)
        return qv_fail(err, QV_ERR_IO,
                       "%s '%s' written, but syncing its folder failed: %s "
                       "(the file may not survive a power cut)",
                       what, path, strerror(e));
    return QV_OK;

fail:
    e = errno;
    close(fd);
fail_noclose:
    if (strcmp(step, "create") != 0)
        unlink(tmp);
    qv_status s = qv_fail(err, QV_ERR_IO,
                          "cannot write %s '%s' (%s of '%s' failed): %s%s",
                          what, path, step, tmp, strerror(e),
                          e == ENOSPC ? " — free some disk space and retry"
                          : e == EFBIG ? " — the file size limit was reached"
                                       : "");
    free(tmp);
    return s;
}

qv_status qv_file_map(const char *path, const char *what, void **map,
                      size_t *len, qv_err *err)
{
    if (!path || !what || !map || !len)
        return qv_fail(err, QV_ERR_INVALID, "qv_file_map: NULL argument");
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return qv_fail(err, e == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                       "cannot open %s '%s': %s", what, path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qv_fail(err, QV_ERR_IO, "cannot stat %s '%s': %s", what, path,
                       strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qv_fail(err, QV_ERR_IO, "%s '%s' is not a regular file", what,
                       path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return qv_fail(err, QV_ERR_IO, "%s '%s' is too large to map", what,
                       path);
    }
    size_t n = (size_t)st.st_size;
    void *m = NULL;
    if (n) {
        m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return qv_fail(err, e == ENOMEM ? QV_ERR_NOMEM : QV_ERR_IO,
                           "cannot map %s '%s' (%zu bytes): %s", what, path,
                           n, strerror(e));
        }
    }
    close(fd);
    *map = m;
    *len = n;
    return QV_OK;
}

void qv_file_unmap(void *map, size_t len)
{
    if (map)
        munmap(map, len);
}
