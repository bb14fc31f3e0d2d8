/* tests/fuzz/fuzz_bench.c — libFuzzer target for the bench result a worker
 * sends (train/bench.h: qv_bench_from_json after jansson's parser), which
 * the scheduler stores and `qvac report` prints. Whatever the bytes, reading
 * must return a status; what is accepted must hold only printable strings
 * within their fields, finite numbers, and survive qv_bench_to_json and a
 * second read unchanged.
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/bench.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    qv_bench_result r, r2;
    qv_err err = {0};
    if (qv_bench_from_json(j, &r, &err) == QV_OK) {
        check_str(r.device, sizeof r.device);
        check_str(r.name, sizeof r.name);
        check_str(r.vendor, sizeof r.vendor);
        check_str(r.driver, sizeof r.driver);
        check_str(r.fingerprint, sizeof r.fingerprint);
        for (int w = 0; w < 2; w++)
            if (!isfinite(r.mode[w].tokens_per_s) || r.mode[w].tokens_per_s < 0)
                abort();
        json_t *back = qv_bench_to_json(&r);
        if (!back || qv_bench_from_json(back, &r2, &err) != QV_OK ||
            strcmp(r.device, r2.device) || r.mode[1].peak_bytes != r2.mode[1].peak_bytes)
            abort();
        json_decref(back);
    } else if (!err.msg[0]) {
        abort(); /* a refusal says why */
    }
    json_decref(j);
    return 0;
}
