/* scheduler/fleet.h — the fleet's report (issue 13): from the bench results
 * the scheduler stores (train/bench.h, one per worker's device, model and
 * qvac version), one row per device with tokens/s and peak device memory of
 * the ternary and the 16-bit run, their ratios, MFU and tuned ÷ default,
 * as Markdown (the plots embedded as images), JSON (every figure) and two
 * SVG charts. `qvac report` writes them; nothing in them is typed by hand.
 *
 * Every string that came from a peer (worker and device names, vendor,
 * driver) is escaped for where it goes: `|`, `\` and backticks in
 * Markdown tables, `<`, `>`, `&` and quotes in SVG. */
#ifndef QV_SCHEDULER_FLEET_H
#define QV_SCHEDULER_FLEET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "train/bench.h"

typedef struct qv_fleet_row {
    char worker[128];      /* the scheduler's worker id */
    char worker_name[128];
    int64_t received_ms;   /* when the scheduler stored it */
    qv_bench_result r;
} qv_fleet_row;

typedef struct qv_fleet_meta {
    const char *scheduler; /* its address or name, as the client saw it */
    int64_t generated_ms;  /* Unix ms */
    const char *base;      /* file names: BASE.md, BASE.json, BASE-tokens.svg,
                              BASE-memory.svg (NULL: "fleet") */
} qv_fleet_meta;

/* The report as Markdown; malloc'ed, NUL-terminated. */
char *qv_fleet_markdown(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m);
/* The report's figures as JSON; a new reference. */
json_t *qv_fleet_json(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m);
/* A chart: which 0 = steady-state tokens/s, 1 = peak device memory (MiB),
 * ternary and f16 bars per device. malloc'ed SVG text. */
char *qv_fleet_svg(const qv_fleet_row *rows, size_t n, int which);

/* The report as one HTML page (the scheduler's `/`): the tables and both
 * charts inline; every peer string escaped. malloc'ed. */
char *qv_fleet_html(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m);

/* Writes the formats asked for ("md,json,svg"; NULL: all three) into dir
 * (created), each file atomically; the paths written go to written
 * (comma-separated) when it is not NULL. */
qv_status qv_fleet_write(const qv_fleet_row *rows, size_t n, const qv_fleet_meta *m,
                         const char *dir, const char *formats, char *written,
                         size_t written_cap, qv_err *err);

#endif
