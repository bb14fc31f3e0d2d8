/* cli/cmd_devices.c — `qvac devices [--json]`. */
#include <getopt.h>
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"

void qv_help_devices(FILE *out)
{
    fprintf(out,
            "usage: qvac devices [--json] [--best]\n\n"
            "Lists every compute device qvac can use: the plain-C reference "
            "(`ref`), every\nOpenCL device of every platform (`opencl:N`) and "
            "every Vulkan device (`vulkan:N`).\nThe id is what every --device "
            "option accepts; it is stable across runs as long\nas the drivers "
            "installed do not change. The fingerprint (a hash of vendor, "
            "name,\ndriver, compute units and memory) keys the autotune "
            "cache.\n\n"
            "options:\n"
            "  --json     print a JSON list of objects instead of a table\n"
            "  --best     print only the id of the device training uses by default\n"
            "             (a GPU, else OpenCL on the CPU, else Vulkan, else ref)\n"
            "  -h, --help this help\n");
}

static json_t *device_json(const qv_device_info *i)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, "
                     "s:b, s:s}",
                     "id", i->id, "backend", i->backend, "type",
                     i->is_cpu ? "cpu" : "gpu", "vendor", i->vendor,
                     "name", i->name, "driver", i->driver, "compute_units",
                     (json_int_t)i->compute_units, "global_mem_bytes",
                     (json_int_t)i->global_mem_bytes, "local_mem_bytes",
                     (json_int_t)i->local_mem_bytes, "max_alloc_bytes",
                     (json_int_t)i->max_alloc_bytes, "max_work_group_size",
                     (json_int_t)i->limits.max_wg_size, "fp16", i->fp16,
                     "fingerprint", i->fingerprint);
}

int qv_cmd_devices(int argc, char **argv)
{
    int as_json = 0, best = 0;
    static const struct option lo[] = {{"json", no_argument, NULL, QV_CLI_ID},
                                       {"best", no_argument, NULL, QV_CLI_ID + 1},
                                       {NULL, 0, NULL, 0}};
    qv_cli_args ap;
    qv_cli_args_init(&ap, "devices", argc, argv, lo, NULL, 0);
    for (int c; (c = qv_cli_next(&ap)) != -1;) {
        if (c == QV_CLI_BAD)
            return QV_EXIT_USAGE;
        if (c == QV_CLI_ID)
            as_json = 1;
        else
            best = 1;
    }
    qv_err err;
    qv_devlist *list = NULL;
    if (qv_devlist_open(&list, &err))
        return qv_cli_error(&err);
    if (best) {
        qv_device *d = qv_cli_pick_device(list, NULL, &err);
        if (d)
            printf("%s\n", d->info.id);
        qv_devlist_destroy(&list);
        return d ? QV_EXIT_OK : qv_cli_error(&err);
    }
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < list->n; i++)
            json_array_append_new(arr, device_json(&list->dev[i]->info));
        qv_cli_print_json(arr);
    } else {
        printf("%-10s %-7s %-14s %-34s %-22s %4s %10s %9s %6s %4s %s\n", "ID",
               "BACKEND", "VENDOR", "NAME", "DRIVER", "CU", "GLOBAL", "LOCAL",
               "MAXWG", "FP16", "FINGERPRINT");
        for (size_t i = 0; i < list->n; i++) {
            const qv_device_info *d = &list->dev[i]->info;
            char g[32], l[32];
            qv_fmt_bytes(d->global_mem_bytes, g, sizeof g);
            qv_fmt_bytes(d->local_mem_bytes, l, sizeof l);
            printf("%-10s %-7s %-14.14s %-34.34s %-22.22s %4u %10s %9s %6zu "
                   "%4s %s\n",
                   d->id, d->backend, d->vendor, d->name, d->driver,
                   d->compute_units, g, l, d->limits.max_wg_size,
                   d->fp16 ? "yes" : "no", d->fingerprint);
        }
    }
    if (list->notes[0])
        fprintf(stderr, "%s", list->notes);
    qv_devlist_destroy(&list);
    return QV_EXIT_OK;
}
