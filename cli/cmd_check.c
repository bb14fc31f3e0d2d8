/* cli/cmd_check.c — `qvac check`: every kernel, on every device (or one),
 * at awkward shapes and in several configurations, against the reference.
 * What a user runs on a machine before enrolling it as a worker. */
#include <getopt.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/progress.h"
#include "kernels/verify.h"

void qv_help_check(FILE *out)
{
    fprintf(out,
            "usage: qvac check [--device ID] [--kernel NAME] [--json]\n\n"
            "Runs every kernel on every device against the plain-C reference, "
            "at shapes that\nare not multiples of any tile (1, 3, 17, 255, "
            "1000, ...) and in several\nconfigurations of each kernel, and "
            "prints a PASS/FAIL table with the largest\nerror. Exits 1 if "
            "anything fails.\n\noptions:\n"
            "  --device ID    only this device (see `qvac devices`)\n"
            "  --kernel NAME  only this kernel (see `qvac kernels`)\n"
            "  --json         print the results as JSON\n"
            "  -h, --help     this help\n");
}

static const qv_shape shapes[] = {
    {1, 1, 1, 1},     {1, 1000, 255, 8},   {3, 17, 1000, 3},
    {17, 255, 3, 17}, {255, 3, 17, 128},   {64, 128, 256, 16},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static const char *mm_configs[] = {
    "default",
    "TX=8,TY=2",
    "LOCAL=1",
    "WG_X=8,WG_Y=4,TX=2,TY=4,LOCAL=1,KT=4",
    "WG_X=32,WG_Y=2,TX=4",
    "WG_X=8,WG_Y=4,TY=4,LOCAL=1,KT=4",
    "WG_X=8,TX=2,TY=4",  /* two-wide column vectors at LOCAL=0 */
    "WG_X=8,TX=16,TY=8", /* the widest tile: float16 vectors, 128 outputs */
    NULL,
};
static const char *qa_configs[] = {
    "default", "WG_X=1", "WG_X=256,VEC=4", "WG_X=8,WG_Y=4,VEC=4", NULL,
};

typedef struct row {
    const char *device, *kernel;
    int runs, fails, skipped;
    double max_err, tol;
} row;

int qv_cmd_check(int argc, char **argv)
{
    const char *want_dev = NULL, *want_kernel = NULL;
    int as_json = 0;
    enum { O_JSON = QV_CLI_ID, O_DEVICE, O_KERNEL };
    static const struct option lo[] = {{"json", no_argument, NULL, O_JSON},
                                       {"device", required_argument, NULL, O_DEVICE},
                                       {"kernel", required_argument, NULL, O_KERNEL},
                                       {NULL, 0, NULL, 0}};
    qv_cli_args ap;
    qv_cli_args_init(&ap, "check", argc, argv, lo, NULL, 0);
    for (int c; (c = qv_cli_next(&ap)) != -1;) {
        if (c == O_JSON)
            as_json = 1;
        else if (c == O_DEVICE)
            want_dev = optarg;
        else if (c == O_KERNEL)
            want_kernel = optarg;
        else
            return QV_EXIT_USAGE;
    }
    if (want_kernel && !qv_kernel_find(want_kernel))
        return qv_cli_usage("check", "no kernel named '%s' (see `qvac "
                            "kernels`)", want_kernel);
    qv_err err;
    qv_devlist *list = NULL;
    if (qv_devlist_open(&list, &err))
        return qv_cli_error(&err);
    qv_device *ref = qv_devlist_find(list, "ref");
    if (want_dev && !qv_devlist_find(list, want_dev)) {
        fprintf(stderr, "qvac: no device '%s'; `qvac devices` lists "
                        "them\n%s", want_dev, list->notes);
        qv_devlist_destroy(&list);
        return QV_EXIT_USAGE;
    }
    qv_progress line;
    qv_progress_init(&line, 0);
    int progress = !as_json && line.tty; /* on a terminal only */
    json_t *jrows = as_json ? json_array() : NULL;
    row *rows = NULL; /* one per device and kernel: grows with both */
    int nrows = 0, cap = 0, total_fail = 0;
    for (size_t d = 0; d < list->n; d++) {
        qv_device *dev = list->dev[d];
        if (want_dev && strcmp(dev->info.id, want_dev))
            continue;
        for (int ki = 0; qv_kernels[ki]; ki++) {
            const qv_kernel_decl *k = qv_kernels[ki];
            if (want_kernel && strcmp(k->name, want_kernel))
                continue;
            if (nrows == cap) {
                int nc = cap ? 2 * cap : 64;
                row *nr = realloc(rows, (size_t)nc * sizeof *nr);
                if (!nr) {
                    fprintf(stderr, "qvac check: out of memory\n");
                    free(rows);
                    json_decref(jrows);
                    qv_devlist_destroy(&list);
                    return QV_EXIT_FAIL;
                }
                rows = nr, cap = nc;
            }
            row *r = &rows[nrows++];
            memset(r, 0, sizeof *r);
            r->device = dev->info.id;
            r->kernel = k->name;
            r->tol = qv_verify_tolerance(k);
            const char **cfgs = strcmp(k->name, "quantize_act") ? mm_configs
                                                                 : qa_configs;
            json_t *jres = as_json ? json_array() : NULL;
            for (int ci = 0; cfgs[ci]; ci++) {
                qv_config c;
                char cfgtxt[160];
                if (qv_config_parse(k, cfgs[ci], &c, &err) ||
                    qv_kernel_check_config(k, &c, &dev->info.limits, &err)) {
                    r->skipped++;
                    continue;
                }
                qv_config_format(k, &c, cfgtxt, sizeof cfgtxt);
                for (size_t si = 0; si < N_SHAPES; si++) {
                    if (progress)
                        qv_progress_line(&line, 1, "checking %s %s  config %d/%d "
                                         "shape %zu/%zu", dev->info.id, k->name, ci + 1,
                                         (int)(sizeof mm_configs / sizeof *mm_configs) - 1,
                                         si + 1, N_SHAPES);
                    qv_verify_result res;
                    qv_err_clear(&err);
                    qv_status st = qv_verify(dev, ref, k, &c, shapes[si],
                                             1000 + si * 7919 + (size_t)ci, &res,
                                             &err);
                    r->runs++;
                    if (st || !res.pass) {
                        r->fails++;
                        if (!as_json) {
                            qv_progress_clear(&line);
                            fprintf(stderr, "FAIL %s %s [%s] M=%d N=%d K=%d "
                                    "R=%d: %s\n", dev->info.id, k->name, cfgtxt,
                                    shapes[si].M, shapes[si].N, shapes[si].K,
                                    shapes[si].R, st ? err.msg : "wrong result");
                        }
                    }
                    if (!st && res.max_err > r->max_err)
                        r->max_err = res.max_err;
                    if (jres) {
                        json_t *o = json_pack("{s:s, s:[iiii], s:f, s:f, s:b}",
                            "config", cfgtxt, "shape", shapes[si].M,
                            shapes[si].N, shapes[si].K, shapes[si].R,
                            "max_err", st ? -1.0 : res.max_err, "tol",
                            res.tol, "pass", !st && res.pass);
                        if (st)
                            json_object_set_new(o, "error", json_string(err.msg));
                        else if (!res.pass)
                            json_object_set_new(o, "worst_output",
                                                json_string(res.worst));
                        json_array_append_new(jres, o);
                    }
                }
            }
            total_fail += r->fails;
            if (jrows)
                json_array_append_new(jrows, json_pack(
                    "{s:s, s:s, s:i, s:i, s:f, s:f, s:b, s:o}", "device",
                    r->device, "kernel", r->kernel, "runs", r->runs,
                    "configs_skipped", r->skipped, "max_err", r->max_err,
                    "tol", r->tol, "pass", r->fails == 0 && r->runs > 0,
                    "results", jres));
        }
    }
    qv_progress_clear(&line);
    if (as_json) {
        qv_cli_print_json(jrows);
    } else {
        printf("%-10s %-17s %5s %6s %11s %9s  %s\n", "DEVICE", "KERNEL", "RUNS",
               "FAILED", "MAX ERROR", "TOL", "RESULT");
        for (int i = 0; i < nrows; i++)
            printf("%-10s %-17s %5d %6d %11.3g %9.0e  %s\n", rows[i].device,
                   rows[i].kernel, rows[i].runs, rows[i].fails,
                   rows[i].max_err, rows[i].tol,
                   rows[i].fails == 0 && rows[i].runs > 0 ? "PASS" : "FAIL");
        printf("%zu shapes x up to %d configurations per kernel; errors are "
               "relative to max|ref| (quantize_act: int8 codes)\n", N_SHAPES,
               (int)(sizeof mm_configs / sizeof *mm_configs) - 1);
    }
    if (list->notes[0])
        fprintf(stderr, "%s", list->notes);
    qv_devlist_destroy(&list);
    for (int i = 0; i < nrows; i++)
        if (rows[i].runs == 0)
            total_fail++;
    free(rows);
    return total_fail ? QV_EXIT_FAIL : QV_EXIT_OK;
}
