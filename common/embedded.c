/* common/embedded.c — lookup into the generated table. */
#include "common/embedded.h"

#include <string.h>

const qv_embedded_file *qv_embedded_find(const char *name)
{
    for (const qv_embedded_file *f = qv_embedded_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}
