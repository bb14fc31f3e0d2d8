/* common/progress.h — the one progress line of the command line (training,
 * tuning, transfers, `qvac check`, `submit --wait`): on a terminal one line
 * redrawn in place; elsewhere (a log, a pipe) whole lines, at most one per
 * interval, so a log stays readable. Everything goes to stderr. */
#ifndef QV_CLI_PROGRESS_H
#define QV_CLI_PROGRESS_H

#include <stddef.h>

typedef struct qv_progress {
    int tty;        /* stderr is a terminal */
    double every_s; /* off a terminal: at most one line this often (0: all) */
    double last;    /* when the last line went out */
    int open;       /* a redrawn line is on the terminal */
} qv_progress;

/* tty from isatty(2). */
void qv_progress_init(qv_progress *p, double every_s);
/* "#####......" : width cells, done of total, NUL-terminated in out. */
void qv_progress_bar(char *out, size_t n, int width, double done, double total);
/* One progress line (no newline in fmt); force: printed off a terminal
 * whatever the interval (a phase change, the last step). */
void qv_progress_line(qv_progress *p, int force, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Ends the redrawn line with a newline (it stays on screen). */
void qv_progress_end(qv_progress *p);
/* Erases the redrawn line (before other output). */
void qv_progress_clear(qv_progress *p);

#endif
