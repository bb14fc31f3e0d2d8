/* common/status.h — errors as values.
 *
 * Every fallible function returns a qv_status (QV_OK on success) and, when
 * the caller passes a qv_err, writes a message naming the object that failed
 * and what to do about it. Nothing below cli/ prints or exits on error.
 */
#ifndef QV_STATUS_H
#define QV_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum qv_status {
    QV_OK = 0,
    QV_ERR_INVALID,     /* bad argument, shape or configuration */
    QV_ERR_NOMEM,       /* host or device out of memory */
    QV_ERR_DEVICE,      /* a device / driver call failed */
    QV_ERR_UNSUPPORTED, /* the device lacks a feature the call needs */
    QV_ERR_NOT_FOUND,   /* unknown device, kernel or file */
    QV_ERR_COMPILE,     /* a kernel failed to build for a device */
    QV_ERR_IO,          /* file system */
    QV_ERR_CORRUPT      /* malformed input bytes */
} qv_status;

typedef struct qv_err {
    qv_status code;
    char msg[512];
} qv_err;

/* Records code and a printf-style message in err (if err is not NULL) and
 * returns code, so callers can write `return qv_fail(err, QV_ERR_..., ...)`. */
qv_status qv_fail(qv_err *err, qv_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Puts "<formatted prefix>: " before the message already in err (the one
 * a callee wrote) and sets code; returns code. Safe on NULL. */
qv_status qv_err_prefix(qv_err *err, qv_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Resets err to "no error". Safe on NULL. */
void qv_err_clear(qv_err *err);

/* Short stable name of a status code, e.g. "invalid". */
const char *qv_status_name(qv_status code);

/* Appends one formatted line (with its newline) to the NUL-terminated text
 * in buf[cap]; a line that does not fit whole is cut, and nothing is added
 * once the buffer is full. For notes collected for the user to read. */
void qv_append_line(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void qv_append_vline(char *buf, size_t cap, const char *fmt, va_list ap);

/* A text from a file or a peer made safe for a message or a terminal:
 * control bytes (< 0x20, 0x7f) written as \n, \r, \t or \xNN, C1 controls
 * (U+0080..U+009F) as \u00NN and bytes that are not UTF-8 as \xNN (so a
 * line stays one line and no escape sequence reaches a terminal); cut with
 * "..." at a whole character when it does not fit dst[cap]; always
 * NUL-terminated (cap >= 1). */
void qv_printable(char *dst, size_t cap, const char *s);

/* The UTF-8 sequence at s with avail bytes readable: its length (1..4)
 * when valid, 0 when it is not UTF-8 (a stray continuation byte, an
 * overlong form, a surrogate, past U+10FFFF), -1 when it is cut short and
 * more bytes may complete it (or avail is 0). */
int qv_utf8_seq(const unsigned char *s, size_t avail);

#endif
