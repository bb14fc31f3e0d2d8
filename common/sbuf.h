/* common/sbuf.h — a growing string for documents built piece by piece
 * (reports, /metrics). Out of memory is sticky: later appends do nothing
 * and qv_sbuf_take returns NULL. */
#ifndef QV_COMMON_SBUF_H
#define QV_COMMON_SBUF_H

#include <stddef.h>

typedef struct qv_sbuf {
    char *p;
    size_t n, cap;
    int oom;
} qv_sbuf;

void qv_sbuf_printf(qv_sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The text (malloc'ed, the caller frees it), or NULL after out of memory
 * or when nothing was appended. b is empty afterwards. */
char *qv_sbuf_take(qv_sbuf *b);

#endif
