/* tests/fuzz/fuzz_wire.c — libFuzzer target for the wire decoder
 * (formats/wire.c), which reads every message a scheduler or worker gets
 * from the network.
 *
 * The first byte picks a message type (mod QV_MSG_COUNT); the rest is
 * decoded twice: as that type's body, and split into frames (each frame a
 * one-byte length, then that many bytes, the last frame taking what is
 * left). Whatever the bytes, decoding must return a status without reading
 * out of bounds, and a failure must leave no message and say why. What
 * decodes is walked (every value of every map and array, every getter on
 * every key), re-encoded with qv_wire_w_object and decoded again: the same
 * bytes must come back (msgpack-c packs each value in its shortest form,
 * so the check is on the second encoding).
 *
 *   make fuzz              # runs for FUZZ_SECONDS (default 30)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk(const msgpack_object *o, int depth)
{
    /* depth counts containers: the body map is 1 */
    if (depth > QV_WIRE_MAX_DEPTH && (o->type == MSGPACK_OBJECT_ARRAY ||
                                      o->type == MSGPACK_OBJECT_MAP))
        abort();
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        for (uint32_t i = 0; i < o->via.str.size; ++i)
            sink += (uint8_t)o->via.str.ptr[i];
        break;
    case MSGPACK_OBJECT_BIN:
        if (o->via.bin.size > QV_WIRE_MAX_CHUNK)
            abort();
        for (uint32_t i = 0; i < o->via.bin.size; ++i)
            sink += (uint8_t)o->via.bin.ptr[i];
        break;
    case MSGPACK_OBJECT_ARRAY:
        if (o->via.array.size > QV_WIRE_MAX_ARRAY)
            abort();
        for (uint32_t i = 0; i < o->via.array.size; ++i)
            walk(&o->via.array.ptr[i], depth + 1);
        break;
    case MSGPACK_OBJECT_MAP: {
        if (o->via.map.size > QV_WIRE_MAX_MAP)
            abort();
        for (uint32_t i = 0; i < o->via.map.size; ++i) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR ||
                kv->key.via.str.size == 0 ||
                kv->key.via.str.size > QV_WIRE_MAX_KEY)
                abort();
            char key[QV_WIRE_MAX_KEY + 1];
            memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            key[kv->key.via.str.size] = '\0';
            if (qv_wire_find(o, key) != &kv->val)
                abort(); /* keys are unique */
            /* every getter: the one for the value's type succeeds */
            qv_err err;
            char buf[64];
            const char *s;
            size_t n;
            uint64_t u;
            int64_t i64;
            double d;
            bool b;
            const void *p;
            const msgpack_object *sub;
            msgpack_object_type t = kv->val.type;
            if ((qv_wire_get_strv(o, key, &s, &n, QV_WIRE_MAX_STR, &err) ==
                 QV_OK) != (t == MSGPACK_OBJECT_STR))
                abort();
            if (qv_wire_get_str(o, key, buf, sizeof buf, &err) == QV_OK &&
                strlen(buf) != kv->val.via.str.size)
                abort(); /* strings hold no NUL */
            if ((qv_wire_get_u64(o, key, &u, &err) == QV_OK) !=
                (t == MSGPACK_OBJECT_POSITIVE_INTEGER))
                abort();
            if (qv_wire_get_i64(o, key, &i64, &err) == QV_OK)
                sink += (uint64_t)i64;
            if (qv_wire_get_f64(o, key, &d, &err) == QV_OK && d != d)
                abort(); /* no NaN gets through */
            if ((qv_wire_get_bool(o, key, &b, &err) == QV_OK) !=
                (t == MSGPACK_OBJECT_BOOLEAN))
                abort();
            if ((qv_wire_get_bin(o, key, &p, &n, QV_WIRE_MAX_CHUNK, &err) ==
                 QV_OK) != (t == MSGPACK_OBJECT_BIN))
                abort();
            if ((qv_wire_get_map(o, key, &sub, &err) == QV_OK) !=
                (t == MSGPACK_OBJECT_MAP))
                abort();
            if ((qv_wire_get_array(o, key, &sub, &n, QV_WIRE_MAX_ARRAY,
                                   &err) == QV_OK) !=
                (t == MSGPACK_OBJECT_ARRAY))
                abort();
            walk(&kv->val, depth + 1);
        }
        break;
    }
    default:
        sink += o->via.u64;
    }
}

static void check(qv_status st, qv_wire_msg *m, const qv_err *err)
{
    if (st != QV_OK) {
        if (m || !err->msg[0] || err->code != st)
            abort(); /* a failure leaves nothing and says why */
        return;
    }
    if (!m || (unsigned)qv_wire_msg_type(m) >= QV_MSG_COUNT)
        abort();
    const msgpack_object *body = qv_wire_msg_body(m);
    if (body->type != MSGPACK_OBJECT_MAP)
        abort();
    walk(body, 1);

    /* re-encode the body as it is, twice: the second must equal the first */
    qv_wire_out o1, o2;
    qv_err e;
    qv_wire_writer *w;
    if (qv_wire_writer_new(qv_wire_msg_type(m), body->via.map.size, &w, &e))
        abort();
    for (uint32_t i = 0; i < body->via.map.size; ++i) {
        qv_wire_w_object(w, &body->via.map.ptr[i].key);
        qv_wire_w_object(w, &body->via.map.ptr[i].val);
    }
    if (qv_wire_finish(w, &o1, &e) != QV_OK)
        abort(); /* a decoded body the writer refuses */
    qv_wire_writer_free(w);
    qv_wire_msg *m2;
    if (qv_wire_decode(o1.frame, QV_WIRE_FRAMES, &m2, &e) != QV_OK)
        abort();
    const msgpack_object *b2 = qv_wire_msg_body(m2);
    if (qv_wire_writer_new(qv_wire_msg_type(m2), b2->via.map.size, &w, &e))
        abort();
    for (uint32_t i = 0; i < b2->via.map.size; ++i) {
        qv_wire_w_object(w, &b2->via.map.ptr[i].key);
        qv_wire_w_object(w, &b2->via.map.ptr[i].val);
    }
    if (qv_wire_finish(w, &o2, &e) != QV_OK)
        abort();
    qv_wire_writer_free(w);
    if (o1.body_len != o2.body_len ||
        memcmp(o1.body, o2.body, o1.body_len) != 0)
        abort();
    qv_wire_msg_free(m2);
    qv_wire_out_free(&o1);
    qv_wire_out_free(&o2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* exact-size copies so ASan sees any over-read */
    qv_wire_type t = (qv_wire_type)(data[0] % QV_MSG_COUNT);
    uint8_t *body = malloc(size - 1 ? size - 1 : 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    qv_wire_msg *m = NULL;
    qv_err err;
    check(qv_wire_decode_body(t, body, size - 1, &m, &err), m, &err);
    qv_wire_msg_free(m);
    free(body);

    /* as frames: up to 4, length-prefixed, the last one the rest */
    qv_wire_frame f[4];
    uint8_t *copies[4] = {0};
    size_t nf = 0, off = 0;
    while (nf < 4 && off < size) {
        size_t len = data[off++];
        if (nf == 3 || len > size - off)
            len = size - off;
        copies[nf] = malloc(len ? len : 1);
        if (!copies[nf])
            break;
        memcpy(copies[nf], data + off, len);
        f[nf] = (qv_wire_frame){copies[nf], len};
        ++nf;
        off += len;
    }
    m = NULL;
    check(qv_wire_decode(f, nf, &m, &err), m, &err);
    qv_wire_msg_free(m);
    for (size_t i = 0; i < nf; ++i)
        free(copies[i]);
    return 0;
}
