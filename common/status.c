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

int qv_utf8_seq(const unsigned char *s, size_t avail)
{
    if (!avail)
        return -1;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3
          : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (!n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= avail)
            return -1; /* so far so good: more bytes may complete it */
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        if (i == 1 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) ||
                       (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90)))
            return 0;
    }
    return n;
}

/* The length of the valid UTF-8 sequence at s (1..4) in a NUL-terminated
 * string, 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    size_t avail = 1;
    while (avail < 4 && s[avail - 1] && s[avail])
        avail++;
    int n = qv_utf8_seq(s, avail);
    return n > 0 ? (size_t)n : 0;
}

void qv_printable(char *dst, size_t cap, const char *s)
{
    if (!cap)
        return;
    size_t w = 0, starts[4] = {0}; /* where the last items began */
    unsigned ns = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (u && *u) {
        unsigned char c = *u, c1 = u[1];
        size_t n = c < 0x80 ? 1 : utf8_len(u);
        char item[8];
        size_t il;
        if (c == '\n' || c == '\r' || c == '\t') {
            il = (size_t)snprintf(item, sizeof item, "\\%c",
                                  c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        } else if (c < 0x20 || c == 0x7f || n == 0) { /* a control, or not UTF-8 */
            il = (size_t)snprintf(item, sizeof item, "\\x%02x", c);
            n = 1;
        } else if (n == 2 && c == 0xc2 && c1 < 0xa0) {
            /* U+0080..U+009F: C1 controls (U+009B is CSI in some terminals) */
            il = (size_t)snprintf(item, sizeof item, "\\u%04x", (unsigned)c1);
        } else {
            memcpy(item, u, n);
            il = n;
        }
        if (w + il + 1 > cap) { /* cut: "..." where whole items end */
            for (unsigned k = 0; w + 4 > cap && k < 4 && ns > k; k++)
                w = starts[(ns - 1 - k) % 4];
            if (w + 4 <= cap) {
                memcpy(dst + w, "...", 3);
                w += 3;
            }
            break;
        }
        starts[ns++ % 4] = w;
        memcpy(dst + w, item, il);
        w += il;
        u += n;
    }
    dst[w < cap ? w : cap - 1] = '\0';
}
