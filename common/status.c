/* common/status.c — see status.h. */
#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

qv_status qv_fail(qv_err *err, qv_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

qv_status qv_err_prefix(qv_err *err, qv_status code, const char *fmt, ...)
{
    if (err) {
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        size_t at = n < 0 ? 0 : (size_t)n;
        if (at < sizeof err->msg - 1) {
            size_t len = strlen(old);
            err->msg[at++] = ':';
            if (at < sizeof err->msg - 1)
                err->msg[at++] = ' ';
            size_t room = sizeof err->msg - at - 1;
            if (len > room)
                len = room;
            memcpy(err->msg + at, old, len);
            err->msg[at + len] = '\0';
        }
        err->code = code;
    }
    return code;
}

void qv_err_clear(qv_err *err)
{
    if (err) {
        err->code = QV_OK;
        err->msg[0] = '\0';
    }
}

const char *qv_status_name(qv_status code)
{
    switch (code) {
    case QV_OK: return "ok";
    case QV_ERR_INVALID: return "invalid";
    case QV_ERR_NOMEM: return "out-of-memory";
    case QV_ERR_DEVICE: return "device";
    case QV_ERR_UNSUPPORTED: return "unsupported";
    case QV_ERR_NOT_FOUND: return "not-found";
    case QV_ERR_COMPILE: return "compile";
    case QV_ERR_IO: return "io";
    case QV_ERR_CORRUPT: return "corrupt";
    }
    return "unknown";
}

void qv_append_vline(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t off = strlen(buf);
    if (off + 2 >= cap)
        return;
    vsnprintf(buf + off, cap - off - 1, fmt, ap);
    off = strlen(buf);
    buf[off] = '\n';
    buf[off + 1] = '\0';
}

void qv_append_line(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qv_append_vline(buf, cap, fmt, ap);
    va_end(ap);
}

void qv_printable(char *dst, size_t cap, const char *s)
{
    size_t w = 0;
    for (; s && *s && w + 5 < cap; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t')
            w += (size_t)snprintf(dst + w, cap - w, "\\%c",
                                  c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else if (c < 0x20 || c == 0x7f)
            w += (size_t)snprintf(dst + w, cap - w, "\\x%02x", c);
        else
            dst[w++] = (char)c;
    }
    if (s && *s && w + 3 < cap) {
        memcpy(dst + w, "...", 3);
        w += 3;
    }
    dst[w] = '\0';
}
