/* common/progress.c — the progress line (common/progress.h). */
#include "common/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void qv_progress_init(qv_progress *p, double every_s)
{
    p->tty = isatty(2);
    p->every_s = every_s;
    p->last = 0;
    p->open = 0;
}

void qv_progress_bar(char *out, size_t n, int width, double done, double total)
{
    if (!n)
        return;
    if (width > (int)n - 1)
        width = (int)n - 1;
    int fill = total > 0 ? (int)((double)width * done / total) : 0;
    if (fill > width)
        fill = width;
    if (fill < 0)
        fill = 0;
    for (int i = 0; i < width; i++)
        out[i] = i < fill ? '#' : '.';
    out[width] = '\0';
}

void qv_progress_line(qv_progress *p, int force, const char *fmt, ...)
{
    double now = mono_s();
    if (!p->tty && !force && p->every_s > 0 && p->last > 0 && now - p->last < p->every_s)
        return;
    p->last = now;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s", line);
        p->open = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void qv_progress_end(qv_progress *p)
{
    if (p->tty && p->open)
        fputc('\n', stderr);
    p->open = 0;
}

void qv_progress_clear(qv_progress *p)
{
    if (p->tty && p->open)
        fprintf(stderr, "\r\033[K");
    p->open = 0;
}
