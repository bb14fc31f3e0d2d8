/* tests/fuzz/seeds.c — writes the fuzz targets' seed corpora from real
 * files (`make fuzz` runs it first; nothing it writes is committed):
 *
 *   fuzz_gguf, fuzz_model   the built-in model (data/model/qvac-tiny.gguf)
 *                           and the LoRA adapter qvac writes for it
 *   fuzz_vocab              mode 0 + those files, and + each llama.cpp
 *                           models/ggml-vocab-*.gguf under $QVAC_LLAMA_CPP
 *                           (when given); mode 2 + lines of the fine-tune
 *                           data
 *   fuzz_dataset            the fine-tune data (JSON Lines, its first 4 KiB),
 *                           the pretraining corpus (packed text), and a chat
 *                           conversation, with the target's mode bytes
 *   fuzz_i2s, fuzz_tq       the built-in model's first ternary rows, encoded
 *                           as bitnet.cpp's I2_S and llama.cpp's TQ2_0 and
 *                           TQ1_0, with the targets' shape bytes
 *   fuzz_tune_import        an export (qv_tune_cache_export) of a cache
 *                           holding entries as `qvac tune` writes them
 *   fuzz_wire               every message a scheduler receives, as qvac's
 *                           client and worker build them (type byte + body)
 *   fuzz_sessions           a client's and a worker's conversations: hello,
 *                           enroll, heartbeat, upload, submit, jobs, cancel,
 *                           logs, progress, done (records of that target)
 *
 * usage: fuzz_seeds OUT_DIR   (run from the repository root) */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autotune/cache.h"
#include "formats/i2s.h"
#include "formats/tq.h"
#include "formats/wire.h"
#include "kernels/ternary.h"
#include "train/model.h"
#include "train/net.h"
#include "train/train.h"

static const char *out_dir;
static int failed;

static void put(const char *target, const char *name, const void *pre, size_t npre,
                const void *data, size_t n)
{
    char dir[512], path[768];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, target);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (npre && fwrite(pre, 1, npre, f) != npre) || (n && fwrite(data, 1, n, f) != n)) {
        fprintf(stderr, "fuzz_seeds: cannot write %s: %s\n", path, strerror(errno));
        failed = 1;
    }
    if (f)
        fclose(f);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = len > 0 ? (size_t)len : 0;
    return b;
}

/* ---- files ------------------------------------------------------------------ */

static void gguf_seeds(const qv_model *m)
{
    size_t n = 0;
    uint8_t *model = slurp("data/model/qvac-tiny.gguf", &n);
    if (!model) {
        fprintf(stderr, "fuzz_seeds: data/model/qvac-tiny.gguf is missing\n");
        failed = 1;
        return;
    }
    put("fuzz_gguf", "qvac-tiny.gguf", NULL, 0, model, n);
    put("fuzz_model", "qvac-tiny.gguf", NULL, 0, model, n);
    put("fuzz_vocab", "qvac-tiny.gguf", "\0", 1, model, n);
    free(model);

    /* the adapter qvac writes (the target layers of every block) */
    qv_devlist *devs = NULL;
    qv_err e = {0};
    if (qv_devlist_open(&devs, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
        failed = 1;
        return;
    }
    qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 4, .rank = 2,
                     .alpha = 4, .targets = 1u << QV_LIN_Q | 1u << QV_LIN_V, .seed = 1};
    qv_net *net = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/adapter.gguf", out_dir);
    if (qv_net_new(qv_devlist_find(devs, "ref"), (qv_model *)m, &o, &net, &e) != QV_OK ||
        qv_adapter_save(net, 4.0f, 2, o.targets, path, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: adapter: %s\n", e.msg);
        failed = 1;
    } else if ((model = slurp(path, &n))) {
        put("fuzz_gguf", "adapter.gguf", NULL, 0, model, n);
        put("fuzz_model", "adapter.gguf", NULL, 0, model, n);
        free(model);
    }
    unlink(path);
    qv_net_free(&net);
    qv_devlist_destroy(&devs);

    const char *lc = getenv("QVAC_LLAMA_CPP");
    static const char *vocabs[] = {"llama-spm", "gpt-2", "falcon", "bert-bge",
                                   "phi-3", "deepseek-llm"};
    for (size_t i = 0; lc && i < sizeof vocabs / sizeof *vocabs; i++) {
        char vp[600], name[64];
        snprintf(vp, sizeof vp, "%s/models/ggml-vocab-%s.gguf", lc, vocabs[i]);
        uint8_t *v = slurp(vp, &n);
        if (!v || n < 1024) { /* absent, or a Git LFS pointer */
            free(v);
            continue;
        }
        snprintf(name, sizeof name, "%s.gguf", vocabs[i]);
        put("fuzz_vocab", name, "\0", 1, v, n);
        free(v);
    }
}

static void dataset_seeds(void)
{
    size_t n = 0;
    uint8_t *jl = slurp("data/finetune/pirate.jsonl", &n);
    if (jl) {
        /* JSON Lines, batch 2 x 16; and with a chat template and truncation */
        size_t cut = n < 4096 ? n : 4096;
        while (cut > 0 && jl[cut - 1] != '\n')
            cut--;
        put("fuzz_dataset", "pirate.jsonl", "\x00\x3d", 2, jl, cut);
        /* its first lines as texts for the fixed vocabularies */
        size_t l1 = 0;
        while (l1 < n && jl[l1] != '\n')
            l1++;
        put("fuzz_vocab", "pirate-line.txt", "\x02", 1, jl, l1);
        free(jl);
    } else {
        failed = 1;
    }
    uint8_t *txt = slurp("data/corpus/stories.txt", &n);
    if (txt) {
        put("fuzz_dataset", "stories.txt", "\x01\x3d", 2, txt, n < 4096 ? n : 4096);
        free(txt);
    } else {
        failed = 1;
    }
    static const char chat[] =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Talk like a pirate.\"},"
        " {\"role\": \"user\", \"content\": \"Where is the treasure?\"},"
        " {\"role\": \"assistant\", \"content\": \"Buried under the old palm, matey!\"}]}\n";
    /* JSON Lines (bit 1) with chat template 0, a 16-token limit, truncating */
    put("fuzz_dataset", "chat.jsonl", "\xc2\x3d", 2, chat, sizeof chat - 1);
}

/* Rows [0, N) and columns [0, K) of a packed matrix with row length Kf. */
static uint32_t *sub_matrix(const qv_linear *l, int32_t N, int32_t K)
{
    int8_t *w = calloc((size_t)N * (size_t)K, 1);
    uint32_t *p = calloc(qv_ternary_bytes(N, K) / 4 + 1, 4);
    qv_err e;
    if (!w || !p || N > l->N || K > l->K) {
        free(w);
        free(p);
        return NULL;
    }
    for (int32_t n = 0; n < N; n++)
        for (int32_t k = 0; k < K; k++)
            w[(size_t)n * (size_t)K + (size_t)k] = (int8_t)qv_ternary_get(l->packed, l->K, n, k);
    if (qv_ternary_pack(w, N, K, p, &e) != QV_OK) {
        free(p);
        p = NULL;
    }
    free(w);
    return p;
}

static void tensor_seeds(const qv_model *m)
{
    const qv_linear *l = &m->layers[0].lin[0];
    for (int rows = 1; rows <= 4; rows += 3)
        for (int blocks = 1; blocks <= 2; blocks++) {
            char name[64];
            int32_t K = QV_I2S_BLOCK * blocks;
            uint32_t *p = sub_matrix(l, rows, K);
            size_t nb = 0;
            qv_err e;
            if (p && qv_i2s_bytes(rows, K, &nb, &e) == QV_OK) {
                uint8_t *b = malloc(nb);
                if (b && qv_ternary_to_i2s(p, rows, K, l->scale, b, nb, &e) == QV_OK) {
                    uint8_t hdr[3] = {(uint8_t)(rows - 1), (uint8_t)(blocks - 1), 0};
                    snprintf(name, sizeof name, "blk0-q-%dx%d.i2s", rows, (int)K);
                    put("fuzz_i2s", name, hdr, 3, b, nb);
                }
                free(b);
            }
            free(p);
            K = 256 * blocks;
            p = sub_matrix(l, rows, K);
            for (int tq1 = 0; p && tq1 < 2; tq1++) {
                nb = tq1 ? qv_tq1_0_bytes(rows, K) : qv_tq2_0_bytes(rows, K);
                uint8_t *b = malloc(nb);
                qv_status st = !b ? QV_ERR_NOMEM
                             : tq1 ? qv_ternary_to_tq1_0(p, rows, K, l->scale, b, nb, &e)
                                   : qv_ternary_to_tq2_0(p, rows, K, l->scale, b, nb, &e);
                if (st == QV_OK) {
                    uint8_t hdr[4] = {(uint8_t)tq1, (uint8_t)(rows - 1), (uint8_t)(blocks - 1), 0};
                    snprintf(name, sizeof name, "blk0-q-%dx%d.tq%d", rows, (int)K, tq1 ? 1 : 2);
                    put("fuzz_tq", name, hdr, 4, b, nb);
                }
                free(b);
            }
            free(p);
        }
}

static void tune_seeds(void)
{
    char db[600], js[600];
    snprintf(db, sizeof db, "%s/tune.db", out_dir);
    snprintf(js, sizeof js, "%s/tune.json", out_dir);
    qv_tune_cache *c = NULL;
    qv_err e = {0};
    if (qv_tune_cache_open(db, 0, 1000, &c, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
        failed = 1;
        return;
    }
    static const struct { const char *kernel, *bucket, *config; double ns; } E[] = {
        {"ternary_matmul", "M512:N2048:K2048:R0", "WG_X=16,WG_Y=8,TILE_M=32,TILE_N=64,TILE_K=32,VEC=4,UNROLL=2", 8.1e6},
        {"quantize_act", "M512:N0:K2048:R0", "WG_X=64,VEC=4", 2.2e5},
        {"f16_matmul", "M512:N2048:K2048:R0", "WG_X=16,WG_Y=16,TILE_M=64,TILE_N=64,TILE_K=16,VEC=4,UNROLL=1", 9.9e6},
    };
    for (size_t i = 0; i < sizeof E / sizeof *E; i++) {
        qv_tune_entry t = {0};
        snprintf(t.key.fingerprint, sizeof t.key.fingerprint, "5f3a9c0d7e21b486");
        snprintf(t.key.kernel, sizeof t.key.kernel, "%s", E[i].kernel);
        snprintf(t.key.src_hash, sizeof t.key.src_hash, "0c1d2e3f4a5b6c7d");
        snprintf(t.key.bucket, sizeof t.key.bucket, "%s", E[i].bucket);
        snprintf(t.config, sizeof t.config, "%s", E[i].config);
        t.median_ns = E[i].ns;
        t.default_ns = E[i].ns * 1.7;
        t.gflops = 212.7;
        t.evals = 16;
        t.failures = 1;
        snprintf(t.strategy, sizeof t.strategy, "model");
        t.created_at = 1764800000;
        snprintf(t.version, sizeof t.version, "0.1.0");
        snprintf(t.backend, sizeof t.backend, "opencl");
        snprintf(t.vendor, sizeof t.vendor, "The pocl project");
        snprintf(t.device_name, sizeof t.device_name, "cpu-haswell-AMD EPYC");
        int stored = 0;
        if (qv_tune_cache_put(c, &t, 1, &stored, &e) != QV_OK)
            fprintf(stderr, "fuzz_seeds: tune entry: %s\n", e.msg), failed = 1;
    }
    size_t nw = 0, n = 0;
    if (qv_tune_cache_export(c, js, &nw, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: export: %s\n", e.msg);
        failed = 1;
    }
    qv_tune_cache_destroy(&c);
    uint8_t *b = slurp(js, &n);
    if (b)
        put("fuzz_tune_import", "export.json", NULL, 0, b, n);
    free(b);
    unlink(js);
    char p[700];
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", db, sfx[i]);
        unlink(p);
    }
}

/* ---- messages ----------------------------------------------------------------- */

typedef struct msgbuf {
    uint8_t *b;
    size_t n, cap;
} msgbuf;

static void mb_add(msgbuf *m, const void *d, size_t n)
{
    if (m->n + n > m->cap) {
        size_t nc = m->cap ? m->cap : 1024;
        while (nc < m->n + n)
            nc *= 2;
        uint8_t *nb = realloc(m->b, nc);
        if (!nb)
            abort();
        m->b = nb, m->cap = nc;
    }
    memcpy(m->b + m->n, d, n);
    m->n += n;
}

static qv_wire_writer *wnew(qv_wire_type t, size_t n)
{
    qv_wire_writer *w = NULL;
    if (qv_wire_writer_new(t, n, &w, NULL) != QV_OK)
        abort();
    return w;
}

/* Writes w's body as a fuzz_wire seed and a fuzz_sessions record of
 * connection `who` into conv. */
static void emit(qv_wire_writer *w, const char *name, msgbuf *conv, uint8_t who)
{
    qv_wire_out o = {0};
    qv_err e = {0};
    if (qv_wire_finish(w, &o, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: %s: %s\n", name, e.msg);
        failed = 1;
        qv_wire_writer_free(w);
        return;
    }
    qv_wire_writer_free(w);
    qv_wire_type t;
    if (qv_wire_type_parse(o.frame[1].data, o.frame[1].size, &t, NULL) != QV_OK)
        abort();
    uint8_t tb = (uint8_t)t;
    put("fuzz_wire", name, &tb, 1, o.frame[2].data, o.frame[2].size);
    uint8_t hdr[4] = {who, tb, (uint8_t)(o.frame[2].size & 0xff),
                      (uint8_t)(o.frame[2].size >> 8)};
    if (o.frame[2].size < 65536) {
        mb_add(conv, hdr, 4);
        mb_add(conv, o.frame[2].data, o.frame[2].size);
    }
    qv_wire_out_free(&o);
}

static void hello(msgbuf *c, uint8_t who, const char *role)
{
    qv_wire_writer *w = wnew(QV_MSG_HELLO, 3);
    qv_wire_kv_str(w, "role", role);
    qv_wire_kv_str(w, "name", role);
    qv_wire_kv_str(w, "version", "0.1.0");
    emit(w, role[0] == 'c' ? "hello-client" : "hello-worker", c, who);
}

static void message_seeds(void)
{
    static const char H[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    msgbuf client = {0}, worker = {0};
    /* a worker: hello, enroll (tuning), heartbeats, progress, done */
    hello(&worker, 1, "worker");
    qv_wire_writer *w = wnew(QV_MSG_ENROLL, 5);
    qv_wire_kv_str(w, "key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    qv_wire_kv_str(w, "name", "gpu-box");
    qv_wire_kv_str(w, "token", "0123456789abcdef0123456789abcdef");
    qv_wire_kv_map(w, "tuning", 2);
    qv_wire_kv_u64(w, "done", 3);
    qv_wire_kv_u64(w, "total", 24);
    qv_wire_kv_array(w, "devices", 2);
    const char *ids[2] = {"opencl:0", "vulkan:0"};
    for (int i = 0; i < 2; i++) {
        qv_wire_w_map(w, 5);
        qv_wire_kv_str(w, "id", ids[i]);
        qv_wire_kv_str(w, "backend", i ? "vulkan" : "opencl");
        qv_wire_kv_str(w, "name", i ? "llvmpipe" : "cpu-haswell");
        qv_wire_kv_u64(w, "memory", 16ull << 30);
        qv_wire_kv_map(w, "tuned", 1);
        qv_wire_w_key(w, "ternary_matmul");
        qv_wire_w_f64(w, 212.7);
    }
    emit(w, "enroll", &worker, 1);
    w = wnew(QV_MSG_HEARTBEAT, 1);
    qv_wire_kv_array(w, "running", 0);
    emit(w, "heartbeat-idle", &worker, 1);
    w = wnew(QV_MSG_HEARTBEAT, 1);
    qv_wire_kv_array(w, "running", 1);
    qv_wire_w_map(w, 3);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "device", "opencl:0");
    emit(w, "heartbeat-running", &worker, 1);
    w = wnew(QV_MSG_PROGRESS, 7);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_u64(w, "step", 40);
    qv_wire_kv_u64(w, "steps", 400);
    qv_wire_kv_f64(w, "loss", 2.31);
    qv_wire_kv_f64(w, "tokens_per_s", 4804.0);
    qv_wire_kv_u64(w, "peak_bytes", 35u << 20);
    emit(w, "progress", &worker, 1);
    w = wnew(QV_MSG_DONE, 4);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "adapter", H);
    qv_wire_kv_str(w, "metrics", H);
    emit(w, "done", &worker, 1);
    w = wnew(QV_MSG_FAILED, 4);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_u64(w, "attempt", 1);
    qv_wire_kv_str(w, "reason", "the cache disk is full");
    qv_wire_kv_bool(w, "retry", true);
    emit(w, "failed", &worker, 1);
    w = wnew(QV_MSG_TUNINGS_GET, 1);
    qv_wire_kv_str(w, "fingerprint", "5f3a9c0d7e21b486");
    emit(w, "tunings_get", &worker, 1);

    /* a client: hello, upload, submit, jobs, workers, logs, cancel, fetch */
    hello(&client, 2, "client");
    w = wnew(QV_MSG_BLOB_PUT, 2);
    qv_wire_kv_str(w, "hash", H);
    qv_wire_kv_u64(w, "size", 4);
    emit(w, "blob_put", &client, 2);
    w = wnew(QV_MSG_BLOB_CHUNK, 4);
    qv_wire_kv_str(w, "hash", H);
    qv_wire_kv_u64(w, "offset", 0);
    qv_wire_kv_u64(w, "size", 4);
    qv_wire_kv_bin(w, "bytes", "test", 4);
    emit(w, "blob_chunk", &client, 2);
    w = wnew(QV_MSG_SUBMIT, 6);
    qv_wire_kv_str(w, "name", "pirate");
    qv_wire_kv_i64(w, "priority", 5);
    qv_wire_kv_str(w, "model", H);
    qv_wire_kv_str(w, "data", H);
    qv_wire_kv_map(w, "options", 3);
    qv_wire_kv_u64(w, "steps", 400);
    qv_wire_kv_u64(w, "rank", 8);
    qv_wire_kv_f64(w, "lr", 1e-3);
    qv_wire_kv_map(w, "needs", 2);
    qv_wire_kv_str(w, "backend", "opencl");
    qv_wire_kv_u64(w, "memory", 1ull << 30);
    emit(w, "submit", &client, 2);
    w = wnew(QV_MSG_JOBS, 2);
    qv_wire_kv_bool(w, "all", true);
    qv_wire_kv_u64(w, "limit", 100);
    emit(w, "jobs", &client, 2);
    w = wnew(QV_MSG_WORKERS, 0);
    emit(w, "workers", &client, 2);
    w = wnew(QV_MSG_LOGS, 2);
    qv_wire_kv_u64(w, "job", 1);
    qv_wire_kv_bool(w, "follow", true);
    emit(w, "logs", &client, 2);
    w = wnew(QV_MSG_CANCEL, 1);
    qv_wire_kv_u64(w, "job", 1);
    emit(w, "cancel", &client, 2);
    w = wnew(QV_MSG_FETCH, 1);
    qv_wire_kv_u64(w, "job", 1);
    emit(w, "fetch", &client, 2);
    w = wnew(QV_MSG_BENCH_RUN, 2);
    qv_wire_kv_str(w, "model", "builtin");
    qv_wire_kv_str(w, "devices", "all");
    emit(w, "bench_run", &client, 2);
    w = wnew(QV_MSG_BENCHES, 1);
    qv_wire_kv_str(w, "model", "builtin");
    emit(w, "benches", &client, 2);

    /* sessions: each conversation alone, and interleaved with the clock
     * moving (0xff records) and a CURVE-side unknown key (bit 5) */
    put("fuzz_sessions", "worker", NULL, 0, worker.b, worker.n);
    put("fuzz_sessions", "client", NULL, 0, client.b, client.n);
    msgbuf both = {0};
    mb_add(&both, client.b, client.n);
    static const uint8_t tick[2] = {0xff, 50};
    mb_add(&both, tick, 2);
    mb_add(&both, worker.b, worker.n);
    mb_add(&both, tick, 2);
    for (size_t i = 0; i + 4 <= client.n;) { /* the client again, from a CURVE peer */
        size_t len = (size_t)client.b[i + 2] | (size_t)client.b[i + 3] << 8;
        uint8_t h[4] = {(uint8_t)(client.b[i] | 0x20), client.b[i + 1], client.b[i + 2],
                        client.b[i + 3]};
        mb_add(&both, h, 4);
        mb_add(&both, client.b + i + 4, len);
        i += 4 + len;
    }
    put("fuzz_sessions", "client-worker-curve", NULL, 0, both.b, both.n);
    free(both.b);
    free(client.b);
    free(worker.b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds OUT_DIR (run from the repository root)\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);
    qv_model *m = NULL;
    qv_err e = {0};
    if (qv_model_load("data/model/qvac-tiny.gguf", &m, &e) != QV_OK) {
        fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
        return 1;
    }
    gguf_seeds(m);
    dataset_seeds();
    tensor_seeds(m);
    tune_seeds();
    message_seeds();
    qv_model_free(&m);
    return failed;
}
