/* tests/fuzz/fuzz_sessions.c — libFuzzer target for the scheduler's
 * session handling (scheduler/server.c): sequences of frames from many
 * connections, fed to a real scheduler (its store in a temporary folder)
 * through qv_server_feed, with the clock moved and the tick run between
 * them. Two schedulers: one insecure (every peer admitted: every handler is
 * reached), one with CURVE keys (unknown connections: the refusal, rate
 * limiting, muting and eviction paths); both with small tables
 * (max_sessions 48, max_unknown 6) so growth and eviction happen. After
 * every message the table's invariants must hold (qv_server_check); at the
 * end of an input the clock jumps an hour and the tick drops every session.
 *
 * An input is records:
 *   byte 0    connection: bits 0-4 pick one of 32 routing ids, bit 5 the
 *             CURVE scheduler; 0xff: the clock moves on (byte 1 x 100 ms)
 *             and the tick runs
 *   byte 1    message type (mod the number of types; 0xff: a frame count
 *             other than 3, from byte 2)
 *   byte 2-3  body length (little endian, cut to what is left)
 *   body
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#define _XOPEN_SOURCE 700
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/wire.h"
#include "scheduler/server.h"
#include "scheduler/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qv_server *srv[2];
static char dir[2][64];
static int64_t clock_ms;

static void setup_once(void)
{
    for (int k = 0; k < 2; k++) {
        /* in memory where there is /dev/shm: every message commits */
        snprintf(dir[k], sizeof dir[k], "%s/qvac_fuzz_sess_XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir[k]))
            abort();
        char key[128];
        snprintf(key, sizeof key, "%s/client.key", dir[k]);
        qv_server_opts o = {.bind = "tcp://127.0.0.1:*", .data_dir = dir[k],
                            .client_key = key, .name = "fuzz", .insecure = !k,
                            .max_sessions = 48, .max_unknown = 6};
        qv_err e = {0};
        if (qv_server_open(&o, &srv[k], &e) != QV_OK) {
            fprintf(stderr, "fuzz_sessions: %s\n", e.msg);
            abort();
        }
    }
    clock_ms = qv_store_now_ms();
}

static void check(int k)
{
    char why[256];
    if (!qv_server_check(srv[k], why, sizeof why)) {
        fprintf(stderr, "fuzz_sessions: %s\n", why);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv[0])
        setup_once();
    size_t at = 0;
    while (at + 2 <= size) {
        uint8_t who = data[at], type = data[at + 1];
        if (who == 0xff) {
            clock_ms += (int64_t)type * 100;
            at += 2;
            for (int k = 0; k < 2; k++) {
                qv_server_tick(srv[k], clock_ms);
                check(k);
            }
            continue;
        }
        size_t len = 0;
        if (at + 4 <= size)
            len = (size_t)data[at + 2] | (size_t)data[at + 3] << 8;
        at += at + 4 <= size ? 4 : 2;
        if (len > size - at)
            len = size - at;
        const uint8_t *body = data + at;
        at += len;
        int k = (who >> 5) & 1;
        char rid[8];
        snprintf(rid, sizeof rid, "c%02u", who & 31u);
        static const char id[] = QV_WIRE_ID "\x01";
        const void *fr[4];
        size_t ln[4];
        int n;
        if (type == 0xff) { /* a frame count the protocol does not have */
            n = len ? 1 + body[0] % 4 : 1;
            for (int i = 0; i < n; i++)
                fr[i] = body, ln[i] = len / (size_t)n;
            if (n == 3)
                n = 2;
        } else {
            const char *tn = qv_wire_type_name((qv_wire_type)(type % QV_MSG_COUNT));
            fr[0] = id, ln[0] = QV_WIRE_ID_LEN;
            fr[1] = tn, ln[1] = strlen(tn);
            fr[2] = body, ln[2] = len;
            n = 3;
        }
        qv_server_feed(srv[k], rid, strlen(rid), fr, ln, n, clock_ms);
        check(k);
        clock_ms += 1;
    }
    /* an hour later every session is gone */
    clock_ms += 3600 * 1000;
    for (int k = 0; k < 2; k++) {
        qv_server_tick(srv[k], clock_ms);
        check(k);
    }
    return 0;
}
