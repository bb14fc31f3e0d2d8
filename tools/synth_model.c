/* tools/synth_model.c — writes a synthetic BitNet GGUF with the real keys,
 * tensor names, shapes, weight types and vocabulary of a public model and
 * random weights: what tests and benchmarks use to run qvac at real sizes
 * without downloading gigabytes. Built by `make build/synth_model`.
 *
 *   build/synth_model --preset bitnet-large --vocab-from ggml-vocab-llama-spm.gguf -o large.gguf
 *   build/synth_model --preset 2b4t --vocab-from llama3-vocab.gguf -o 2b4t.gguf
 *
 * Presets (shapes from the models' config.json):
 *   bitnet-large  1bitLLM/bitnet_b1_58-large as llama.cpp converts it:
 *                 'bitnet', dim 1536, 24 layers, 16 heads, ffn 4096,
 *                 ctx 2048, theta 10000, TQ2_0 weights, F16 embedding
 *   2b4t          microsoft/bitnet-b1.58-2B-4T as bitnet.cpp converts it:
 *                 'bitnet-b1.58', dim 2560, 30 layers, 20 heads (5 kv),
 *                 ffn 6912, ctx 4096, theta 500000, I2_S weights, F16
 *                 embedding
 * Every tokenizer.* key of --vocab-from is copied; the vocabulary size is
 * its token count. Options after --preset override it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "formats/gguf.h"
#include "formats/i2s.h"
#include "formats/tq.h"
#include "kernels/ternary.h"

typedef struct opts {
    const char *arch, *vocab_from, *out, *weights, *emb;
    int dim, layers, heads, kv_heads, ffn, ctx;
    float theta;
    unsigned long long seed;
    int scales;
} opts;

static uint64_t rs;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float gauss(void)
{
    /* sum of 4 uniforms: mean 0, variance 1/3 -> scaled to 1 */
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += (double)(rnd() >> 11) / 9007199254740992.0 - 0.5;
    return (float)(s * 1.7320508);
}

static void usage(void)
{
    fprintf(stderr,
        "usage: synth_model --preset bitnet-large|2b4t --vocab-from VOCAB.gguf -o OUT.gguf\n"
        "                   [--arch bitnet|bitnet-b1.58] [--dim D] [--layers L] [--heads H]\n"
        "                   [--kv-heads K] [--ffn F] [--ctx C] [--theta T]\n"
        "                   [--weights tq2_0|tq1_0|i2_s|f16] [--emb f32|f16] [--seed N]\n"
        "                   [--scales 1]   (blk.N.*.scale tensors, as llama.cpp's bitnet reads)\n");
}

static void *keep[4096];
static int nkeep;
static void *hold(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p || nkeep == 4096) {
        fprintf(stderr, "synth_model: out of memory\n");
        exit(1);
    }
    keep[nkeep++] = p;
    return p;
}

static void check(qv_status s, const qv_err *e)
{
    if (s) {
        fprintf(stderr, "synth_model: %s\n", e->msg);
        exit(1);
    }
}

static void add(qv_gguf_writer *w, const char *name, int nd, int64_t ne0,
                int64_t ne1, uint32_t type, const void *data)
{
    int64_t ne[2] = {ne0, ne1};
    size_t nb;
    qv_err e = {0};
    check(qv_ggml_nbytes(type, (uint32_t)nd, ne, &nb, &e), &e);
    check(qv_gguf_writer_add_tensor(w, name, (uint32_t)nd, ne, type, data, nb, &e), &e);
}

static void add_ones(qv_gguf_writer *w, const char *name, int n)
{
    float *v = hold((size_t)n * 4);
    for (int i = 0; i < n; i++)
        v[i] = 1.0f + 0.1f * gauss();
    add(w, name, 1, n, 1, QV_GGML_F32, v);
}

static void add_linear(qv_gguf_writer *w, const opts *o, const char *name,
                       int N, int K)
{
    size_t n = (size_t)N * (size_t)K;
    int8_t *c = malloc(n);
    uint32_t *packed = malloc(qv_ternary_bytes(N, K));
    if (!c || !packed) {
        fprintf(stderr, "synth_model: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        c[i] = (int8_t)((int)(rnd() % 3) - 1);
    qv_err e = {0};
    check(qv_ternary_pack(c, N, K, packed, &e), &e);
    /* outputs of about the input's size: codes are -1/0/+1 with
     * probability 1/3 each, so a row has ~2K/3 terms */
    float scale = qv_f16_to_f32(qv_f32_to_f16(1.0f / sqrtf((float)K)));
    int64_t ne[2] = {K, N};
    if (!strcmp(o->weights, "f16")) {
        uint16_t *h = hold(n * 2);
        for (size_t i = 0; i < n; i++)
            h[i] = qv_f32_to_f16((float)c[i] * scale);
        add(w, name, 2, K, N, QV_GGML_F16, h);
    } else {
        uint32_t type = !strcmp(o->weights, "i2_s")    ? QV_GGML_I2_S
                        : !strcmp(o->weights, "tq1_0") ? QV_GGML_TQ1_0
                                                       : QV_GGML_TQ2_0;
        size_t nb;
        check(qv_ggml_nbytes(type, 2, ne, &nb, &e), &e);
        uint8_t *b = hold(nb);
        check(type == QV_GGML_I2_S ? qv_ternary_to_i2s(packed, N, K, scale, b, nb, &e)
              : type == QV_GGML_TQ1_0
                  ? qv_ternary_to_tq1_0(packed, N, K, scale, b, nb, &e)
                  : qv_ternary_to_tq2_0(packed, N, K, scale, b, nb, &e),
              &e);
        add(w, name, 2, K, N, type, b);
    }
    free(c);
    free(packed);
}

int main(int argc, char **argv)
{
    opts o = {.weights = "tq2_0", .emb = "f16", .seed = 1, .theta = 10000.0f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--preset")) {
            if (!strcmp(v, "bitnet-large")) {
                o.arch = "bitnet"; o.dim = 1536; o.layers = 24; o.heads = 16;
                o.kv_heads = 16; o.ffn = 4096; o.ctx = 2048; o.theta = 10000.0f;
                o.weights = "tq2_0"; o.emb = "f16";
            } else if (!strcmp(v, "2b4t")) {
                o.arch = "bitnet-b1.58"; o.dim = 2560; o.layers = 30; o.heads = 20;
                o.kv_heads = 5; o.ffn = 6912; o.ctx = 4096; o.theta = 500000.0f;
                o.weights = "i2_s"; o.emb = "f16";
            } else {
                fprintf(stderr, "synth_model: --preset is bitnet-large or 2b4t\n");
                return 2;
            }
        } else if (!strcmp(a, "--arch")) o.arch = v;
        else if (!strcmp(a, "--vocab-from")) o.vocab_from = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--weights")) o.weights = v;
        else if (!strcmp(a, "--emb")) o.emb = v;
        else if (!strcmp(a, "--dim")) o.dim = atoi(v);
        else if (!strcmp(a, "--layers")) o.layers = atoi(v);
        else if (!strcmp(a, "--heads")) o.heads = atoi(v);
        else if (!strcmp(a, "--kv-heads")) o.kv_heads = atoi(v);
        else if (!strcmp(a, "--ffn")) o.ffn = atoi(v);
        else if (!strcmp(a, "--ctx")) o.ctx = atoi(v);
        else if (!strcmp(a, "--theta")) o.theta = (float)atof(v);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--scales")) o.scales = atoi(v);
        else {
            usage();
            return 2;
        }
    }
    if (!o.arch || !o.vocab_from || !o.out || o.dim < 1 || o.layers < 1 ||
        o.heads < 1 || o.kv_heads < 1 || o.ffn < 1 || o.ctx < 1) {
        usage();
        return 2;
    }
    rs = o.seed;
    qv_err e = {0};
    qv_gguf *voc = NULL;
    check(qv_gguf_open(o.vocab_from, &voc, &e), &e);
    const qv_gguf_kv *tk = qv_gguf_find_kv(voc, "tokenizer.ggml.tokens");
    if (!tk) {
        fprintf(stderr, "synth_model: %s has no tokenizer.ggml.tokens\n", o.vocab_from);
        return 1;
    }
    int V = (int)tk->n;
    qv_gguf_writer *w = NULL;
    check(qv_gguf_writer_new(&w, &e), &e);
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", o.arch, s), k)
    check(qv_gguf_writer_set_str(w, "general.architecture", o.arch, &e), &e);
    check(qv_gguf_writer_set_str(w, "general.name", "qvac synthetic", &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)V, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)o.ctx, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)o.dim, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)o.layers, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)o.ffn, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)(o.dim / o.heads), &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)o.heads, &e), &e);
    check(qv_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)o.kv_heads, &e), &e);
    check(qv_gguf_writer_set_f32(w, KEY("rope.freq_base"), o.theta, &e), &e);
    check(qv_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f, &e), &e);
    if (!strcmp(o.arch, "bitnet")) { /* what llama.cpp's BitnetModel adds */
        check(qv_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear", &e), &e);
        check(qv_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), 1.0f, &e), &e);
    }
#undef KEY
    /* the vocabulary: every tokenizer.* key, copied */
    for (size_t i = 0; i < qv_gguf_kv_count(voc); i++) {
        const qv_gguf_kv *kv = qv_gguf_kv_at(voc, i);
        if (strncmp(kv->key, "tokenizer.", 10))
            continue;
        qv_status s = QV_OK;
        if (kv->type == QV_GGUF_STRING) {
            const char *sv;
            if (!(s = qv_gguf_get_str(voc, kv->key, &sv, NULL, &e)))
                s = qv_gguf_writer_set_str(w, kv->key, sv, &e);
        } else if (kv->type == QV_GGUF_ARRAY && kv->elem_type == QV_GGUF_STRING) {
            const char *const *sv;
            size_t n;
            if (!(s = qv_gguf_get_str_arr(voc, kv->key, &sv, NULL, &n, &e)))
                s = qv_gguf_writer_set_str_arr(w, kv->key, sv, n, &e);
        } else if (kv->type == QV_GGUF_ARRAY) {
            const void *d;
            size_t n;
            if (!(s = qv_gguf_get_arr(voc, kv->key, kv->elem_type, &d, &n, &e)))
                s = qv_gguf_writer_set_arr(w, kv->key, kv->elem_type, d, n, &e);
        } else {
            uint64_t v = 0;
            if (!(s = qv_gguf_get_val(voc, kv->key, kv->type, &v, &e)))
                s = qv_gguf_writer_set_val(w, kv->key, kv->type, &v, &e);
        }
        check(s, &e);
    }
    /* embedding */
    size_t VD = (size_t)V * (size_t)o.dim;
    if (!strcmp(o.emb, "f32")) {
        float *emb = hold(VD * 4);
        for (size_t i = 0; i < VD; i++)
            emb[i] = 2.0f / sqrtf((float)o.dim) * gauss();
        add(w, "token_embd.weight", 2, o.dim, V, QV_GGML_F32, emb);
    } else {
        uint16_t *emb = hold(VD * 2);
        for (size_t i = 0; i < VD; i++)
            emb[i] = qv_f32_to_f16(2.0f / sqrtf((float)o.dim) * gauss());
        add(w, "token_embd.weight", 2, o.dim, V, QV_GGML_F16, emb);
    }
    add_ones(w, "output_norm.weight", o.dim);
    int hd = o.dim / o.heads;
    for (int l = 0; l < o.layers; l++) {
        char name[64];
        const char *lin[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                              "ffn_gate", "ffn_up", "ffn_down"};
        int N[7] = {o.dim, o.kv_heads * hd, o.kv_heads * hd, o.dim, o.ffn, o.ffn, o.dim};
        int K[7] = {o.dim, o.dim, o.dim, o.dim, o.dim, o.dim, o.ffn};
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add_ones(w, name, o.dim);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        add_ones(w, name, o.dim);
        snprintf(name, sizeof name, "blk.%d.attn_sub_norm.weight", l);
        add_ones(w, name, o.dim);
        snprintf(name, sizeof name, "blk.%d.ffn_sub_norm.weight", l);
        add_ones(w, name, o.ffn);
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin[i]);
            add_linear(w, &o, name, N[i], K[i]);
            if (o.scales) { /* llama.cpp's optional per-tensor scale */
                float *sc = hold(4);
                *sc = 0.75f + 0.5f * (float)(rnd() >> 11) / 9007199254740992.0f;
                snprintf(name, sizeof name, "blk.%d.%s.scale", l, lin[i]);
                add(w, name, 1, 1, 1, QV_GGML_F32, sc);
            }
        }
    }
    check(qv_gguf_write_file(w, o.out, &e), &e);
    qv_gguf_writer_free(w);
    qv_gguf_free(voc);
    for (int i = 0; i < nkeep; i++)
        free(keep[i]);
    printf("synth_model: wrote %s (%s, dim %d, %d layers, vocabulary %d, %s weights)\n",
           o.out, o.arch, o.dim, o.layers, V, o.weights);
    return 0;
}
