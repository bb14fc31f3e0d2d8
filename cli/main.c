/* cli/main.c — placeholder entry point, replaced by the real CLI. */
#include <stdio.h>
#include "kernels/backend.h"
int main(void)
{
    qv_devlist *l; qv_err e;
    if (qv_devlist_open(&l, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    for (size_t i = 0; i < l->n; i++) printf("%s %s\n", l->dev[i]->info.id, l->dev[i]->info.name);
    fputs(l->notes, stdout);
    qv_devlist_destroy(&l);
    return 0;
}
