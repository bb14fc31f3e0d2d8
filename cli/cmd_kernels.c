/* cli/cmd_kernels.c — `qvac kernels [--json]`: the declared kernels, their
 * arguments and their tunable parameters (the autotuner's search space). */
#include <getopt.h>
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"

void qv_help_kernels(FILE *out)
{
    fprintf(out,
            "usage: qvac kernels [--json]\n\n"
            "Lists every kernel with its arguments, its tunable parameters "
            "and their legal\nvalues (the default marked with *), and the "
            "number of configurations.\n\noptions:\n"
            "  --json     machine-readable output\n"
            "  -h, --help this help\n");
}

int qv_cmd_kernels(int argc, char **argv)
{
    int as_json = 0;
    static const struct option lo[] = {{"json", no_argument, NULL, QV_CLI_ID},
                                       {NULL, 0, NULL, 0}};
    qv_cli_args ap;
    qv_cli_args_init(&ap, "kernels", argc, argv, lo, NULL, 0);
    for (int c; (c = qv_cli_next(&ap)) != -1;) {
        if (c == QV_CLI_BAD)
            return QV_EXIT_USAGE;
        as_json = 1;
    }
    json_t *arr = as_json ? json_array() : NULL;
    for (int i = 0; qv_kernels[i]; i++) {
        const qv_kernel_decl *k = qv_kernels[i];
        size_t n = qv_kernel_count_configs(k, NULL);
        if (as_json) {
            json_t *params = json_array();
            for (int p = 0; p < k->n_params; p++) {
                json_t *vals = json_array();
                for (int v = 0; v < k->params[p].n_values; v++)
                    json_array_append_new(vals, json_integer(k->params[p].values[v]));
                json_array_append_new(params, json_pack("{s:s, s:s, s:o, s:i}",
                    "name", k->params[p].name, "doc", k->params[p].doc,
                    "values", vals, "default", k->params[p].def));
            }
            json_t *args = json_array();
            for (int a = 0; a < k->n_args; a++)
                json_array_append_new(args, json_string(k->args[a].name));
            json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o, s:I, s:i}",
                "name", k->name, "summary", k->summary, "args", args,
                "params", params, "configurations", (json_int_t)n,
                "stages", k->n_stages));
            continue;
        }
        printf("%s — %s\n  args:", k->name, k->summary);
        for (int a = 0; a < k->n_args; a++)
            printf(" %s", k->args[a].name);
        printf("\n");
        for (int p = 0; p < k->n_params; p++) {
            printf("  %-6s {", k->params[p].name);
            for (int v = 0; v < k->params[p].n_values; v++)
                printf("%s%d%s", v ? "," : "", k->params[p].values[v],
                       k->params[p].values[v] == k->params[p].def ? "*" : "");
            printf("}  %s\n", k->params[p].doc);
        }
        printf("  %zu legal configurations (before device limits)\n\n", n);
    }
    if (as_json) {
        qv_cli_print_json(arr);
    }
    return QV_EXIT_OK;
}
