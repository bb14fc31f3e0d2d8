/* common/hash.c — thin wrapper over libxxhash so the rest of qvac never
 * depends on its API directly. */
#include "common/hash.h"

#include <stdio.h>
#include <xxhash.h>

uint64_t qv_hash64(const void *data, size_t len)
{
    return (uint64_t)XXH64(data, len, 0);
}

void qv_hash64_hex(uint64_t h, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
