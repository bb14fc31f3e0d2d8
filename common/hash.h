/* common/hash.h — stable 64-bit content hashes (xxHash's XXH64, seed 0).
 * Used for device fingerprints and, later, kernel-source and blob keys. */
#ifndef QV_HASH_H
#define QV_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t qv_hash64(const void *data, size_t len);

/* Writes the hash as 16 lower-case hex digits plus NUL into out[17]. */
void qv_hash64_hex(uint64_t h, char out[17]);

#endif
