/* tests/test_peft.c — qvac's adapter GGUF and PEFT folders (formats/peft.c)
 * and `qvac export`.
 *
 * The adapters are real: a small model (qv_model_init_random) saved as the
 * base, a net on the reference device with B drawn non-zero, and
 * train/train.c's qv_adapter_save writing the GGUF. The round trip
 * GGUF -> PEFT -> GGUF must give that file back byte for byte. PEFT
 * folders with something qvac cannot hold are made by editing a good
 * export (its JSON with jansson, its tensors rewritten by a safetensors
 * builder local to this file), and each must be refused with a message
 * naming the field or tensor. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/half.h"
#include "formats/gguf.h"
#include "formats/peft.h"
#include "formats/safetensors.h"
#include "kernels/backend.h"
#include "train/train.h"

static qv_devlist *devs;
static char root[64];

static void setup(void)
{
    qv_err e;
    cr_assert_eq(qv_devlist_open(&devs, &e), QV_OK, "%s", e.msg);
    snprintf(root, sizeof root, "/tmp/qvac-peft-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    qv_devlist_destroy(&devs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) {
        /* nothing more to do */
    }
}

TestSuite(peft, .init = setup, .fini = teardown, .timeout = 300);

/* ---- fixtures ------------------------------------------------------- */

#define ALL ((1u << QV_LIN_COUNT) - 1)

static void path_in(char *buf, size_t n, const char *name)
{
    int k = snprintf(buf, n, "%s/%s", root, name);
    cr_assert(k > 0 && (size_t)k < n, "path too long");
}

/* silu: llama.cpp's bitnet (tied, neox); relu2 untied: qvac-bitnet */
static qv_model_config cfg_of(int act)
{
    qv_model_config c = {
        .vocab = 258, .dim = 32, .n_layers = 3, .n_heads = 4,
        .n_kv_heads = 2, .ffn_dim = 64, .ctx = 64, .rope_theta = 10000.0f,
        .norm_eps = 1e-5f, .act = act, .sub_norm = 1,
        .tied = act == QV_ACT_SILU, .rope_neox = act == QV_ACT_SILU,
    };
    return c;
}

/* Saves the base model as <name>.base.gguf and an adapter of it as
 * <name>.gguf (rank, alpha, targets; B non-zero). */
static void make_adapter(const char *name, int act, int32_t rank, float alpha,
                         unsigned targets, char *base, char *adapter,
                         size_t n)
{
    qv_model_config cfg = cfg_of(act);
    qv_model *m = NULL;
    qv_err e;
    cr_assert_eq(qv_model_init_random(&cfg, 3, &m, &e), QV_OK, "%s", e.msg);
    char b[256];
    snprintf(b, sizeof b, "%s.base.gguf", name);
    path_in(base, n, b);
    cr_assert_eq(qv_model_save(m, base, &e), QV_OK, "%s", e.msg);
    qv_net_opts o = {.weights = QV_WEIGHTS_TERNARY, .batch = 1, .seq = 4,
                     .rank = rank, .alpha = alpha, .targets = targets,
                     .seed = 9, .lora_b_std = 0.25f};
    qv_net *net = NULL;
    cr_assert_eq(qv_net_new(qv_devlist_find(devs, "ref"), m, &o, &net, &e),
                 QV_OK, "%s", e.msg);
    snprintf(b, sizeof b, "%s.gguf", name);
    path_in(adapter, n, b);
    cr_assert_eq(qv_adapter_save(net, alpha, rank, targets, adapter, &e),
                 QV_OK, "%s", e.msg);
    qv_net_free(&net);
    qv_model_free(&m);
}

/* What cli/cmd_export.c hands the importer, from a base model file. */
static void base_of(const char *path, char *arch, size_t arch_n,
                    qv_peft_base *b)
{
    qv_gguf *g = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_open(path, &g, &e), QV_OK, "%s", e.msg);
    qv_model_config c;
    cr_assert_eq(qv_model_inspect(g, path, &c, NULL, 0, &e), QV_OK, "%s",
                 e.msg);
    qv_gguf_free(g);
    snprintf(arch, arch_n, "%s", qv_arch_file_name((qv_arch)c.arch));
    b->arch = arch;
    b->n_layers = c.n_layers;
    for (int m = 0; m < QV_PEFT_MODULES; m++)
        qv_model_lin_shape(&c, (qv_lin_id)m, &b->N[m], &b->K[m]);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    p[len] = 0;
    *n = (size_t)len;
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void expect_same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *pa = slurp(a, &na), *pb = slurp(b, &nb);
    cr_assert_eq(na, nb, "%s is %zu bytes, %s %zu", a, na, b, nb);
    size_t i = 0;
    while (i < na && pa[i] == pb[i])
        i++;
    cr_assert_eq(i, na, "%s and %s differ from byte %zu", a, b, i);
    free(pa);
    free(pb);
}

/* GGUF -> PEFT folder */
static void export_peft(const char *gguf, const char *dir)
{
    qv_gguf *g = NULL;
    qv_lora *l = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_open(gguf, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_lora_from_gguf(g, gguf, &l, &e), QV_OK, "%s", e.msg);
    qv_gguf_free(g);
    cr_assert_eq(qv_lora_write_peft(l, dir, 0, &e), QV_OK, "%s", e.msg);
    qv_lora_free(&l);
}

/* PEFT folder -> GGUF; returns the status, keeps the message */
static qv_status import_peft(const char *dir, const qv_peft_base *b,
                             const char *gguf, qv_err *e)
{
    qv_lora *l = NULL;
    qv_status s = qv_lora_read_peft(dir, b, &l, e);
    if (s) {
        cr_assert_null(l);
        return s;
    }
    s = qv_lora_write_gguf(l, gguf, e);
    qv_lora_free(&l);
    return s;
}

/* ---- names ---------------------------------------------------------- */

Test(peft, names_of_every_module_and_layer)
{
    static const char *peft[7] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *gguf[7] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_gate", "ffn_up", "ffn_down"};
    const int layers[] = {0, 1, 9, 10, 29, 1023};
    for (int m = 0; m < 7; m++) {
        /* the same module order and names as train/model.h */
        cr_assert_str_eq(qv_peft_module_qvac(m), qv_lin_name((qv_lin_id)m));
        cr_assert_str_eq(qv_peft_module_gguf(m), gguf[m]);
        cr_assert_str_eq(qv_peft_module_path(m), peft[m]);
        cr_assert_str_eq(qv_peft_module_target(m), strchr(peft[m], '.') + 1);
        for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++)
            for (int b = 0; b < 2; b++) {
                char got[160], want[160];
                qv_peft_tensor_name(layers[i], m, b, got, sizeof got);
                snprintf(want, sizeof want,
                         "base_model.model.model.layers.%d.%s.lora_%c.weight",
                         layers[i], peft[m], b ? 'B' : 'A');
                cr_assert_str_eq(got, want);
                qv_peft_gguf_name(layers[i], m, b, got, sizeof got);
                snprintf(want, sizeof want, "blk.%d.%s.weight.lora_%c",
                         layers[i], gguf[m], b ? 'b' : 'a');
                cr_assert_str_eq(got, want);
            }
    }
    cr_assert_null(qv_peft_module_qvac(7));
    cr_assert_null(qv_peft_module_path(-1));
    /* qvac.lora.targets: written and read as train/model.c does */
    for (unsigned mask = 1; mask <= ALL; mask++) {
        char a[64], b[64];
        qv_peft_format_targets(mask, a, sizeof a);
        qv_lin_format_targets(mask, b, sizeof b);
        cr_assert_str_eq(a, b);
        unsigned back = 0, back2 = 0;
        qv_err e;
        cr_assert_eq(qv_peft_parse_targets(a, &back, &e), QV_OK);
        cr_assert_eq(qv_lin_parse_targets(a, &back2, &e), QV_OK);
        cr_assert_eq(back, mask);
        cr_assert_eq(back2, mask);
    }
    unsigned m;
    qv_err e;
    cr_assert_eq(qv_peft_parse_targets("all", &m, &e), QV_OK);
    cr_assert_eq(m, ALL);
    cr_assert_eq(qv_peft_parse_targets("q,lm_head", &m, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "'lm_head' is not a module"), "%s", e.msg);
}

/* ---- the round trip ------------------------------------------------- */

Test(peft, gguf_to_peft_to_gguf_is_byte_identical)
{
    struct {
        const char *name;
        int act;
        int32_t rank;
        float alpha;
        unsigned targets;
    } c[] = {
        {"all", QV_ACT_SILU, 4, 8.0f, ALL},
        {"qv", QV_ACT_RELU2, 2, 6.5f, (1u << QV_LIN_Q) | (1u << QV_LIN_V)},
        {"odown", QV_ACT_SILU, 3, 0.1f, (1u << QV_LIN_O) | (1u << QV_LIN_DOWN)},
        {"k", QV_ACT_RELU2, 1, 1e-3f, 1u << QV_LIN_K},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char base[256], gguf[256], dir[256], back[256], arch[64];
        make_adapter(c[i].name, c[i].act, c[i].rank, c[i].alpha,
                     c[i].targets, base, gguf, sizeof base);
        char nm[128];
        snprintf(nm, sizeof nm, "%s.peft", c[i].name);
        path_in(dir, sizeof dir, nm);
        snprintf(nm, sizeof nm, "%s.back.gguf", c[i].name);
        path_in(back, sizeof back, nm);
        export_peft(gguf, dir);
        qv_peft_base b;
        base_of(base, arch, sizeof arch, &b);
        qv_err e;
        cr_assert_eq(import_peft(dir, &b, back, &e), QV_OK, "%s: %s",
                     c[i].name, e.msg);
        expect_same_file(gguf, back);
    }
}

/* The exported tensors are the adapter's numbers under PEFT's names and
 * shapes; adapter_config.json says what PEFT needs. */
Test(peft, export_contents)
{
    char base[256], gguf[256], dir[256];
    unsigned targets = (1u << QV_LIN_Q) | (1u << QV_LIN_V) |
                       (1u << QV_LIN_GATE) | (1u << QV_LIN_DOWN);
    make_adapter("contents", QV_ACT_SILU, 4, 32.0f, targets, base, gguf,
                 sizeof base);
    path_in(dir, sizeof dir, "contents.peft");
    export_peft(gguf, dir);

    qv_err e;
    qv_gguf *g = NULL;
    cr_assert_eq(qv_gguf_open(gguf, &g, &e), QV_OK, "%s", e.msg);
    char wpath[300];
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
    qv_st *st = NULL;
    cr_assert_eq(qv_st_open(wpath, &st, &e), QV_OK, "%s", e.msg);
    cr_assert_str_eq(qv_st_meta_get(st, "format"), "pt");
    cr_assert_eq(qv_st_count(st), qv_gguf_tensor_count(g));
    cr_assert_eq(qv_st_count(st), 2u * 4u * 3u);
    int nonzero_b = 0;
    for (size_t i = 0; i < qv_gguf_tensor_count(g); i++) {
        const qv_gguf_tensor *gt = qv_gguf_tensor_at(g, i);
        int L = -1;
        char stem[32], ab = 0;
        cr_assert_eq(sscanf(gt->name, "blk.%d.%31[a-z_].weight.lora_%c", &L,
                            stem, &ab), 3, "%s", gt->name);
        int m = -1;
        for (int k = 0; k < 7; k++)
            if (!strcmp(qv_peft_module_gguf(k), stem))
                m = k;
        cr_assert_geq(m, 0);
        char pn[160];
        qv_peft_tensor_name(L, m, ab == 'b', pn, sizeof pn);
        const qv_st_tensor *t = qv_st_find(st, pn);
        cr_assert_not_null(t, "no %s for %s", pn, gt->name);
        cr_assert_eq(t->dtype, QV_ST_F32);
        cr_assert_eq(t->n_dims, 2);
        /* torch shape = GGUF ne reversed: A [r, K], B [N, r] */
        cr_assert_eq(t->shape[0], gt->ne[1], "%s", pn);
        cr_assert_eq(t->shape[1], gt->ne[0], "%s", pn);
        cr_assert_eq(ab == 'a' ? t->shape[0] : t->shape[1], 4);
        int32_t N, K;
        qv_model_config cfg = cfg_of(QV_ACT_SILU);
        qv_model_lin_shape(&cfg, (qv_lin_id)m, &N, &K);
        cr_assert_eq(ab == 'a' ? t->shape[1] : t->shape[0], ab == 'a' ? K : N);
        cr_assert_eq(t->nbytes, gt->nbytes);
        cr_assert(memcmp(t->data, gt->data, gt->nbytes) == 0,
                  "%s: bytes differ from %s", pn, gt->name);
        if (ab == 'b')
            for (size_t j = 0; j < gt->nbytes / 4; j++)
                nonzero_b |= ((const float *)gt->data)[j] != 0.0f;
    }
    cr_assert(nonzero_b, "the fixture's B should be non-zero");
    qv_st_free(st);
    qv_gguf_free(g);

    char cpath[300];
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *c = json_load_file(cpath, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(c, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(c, "peft_type")), "LORA");
    cr_assert_str_eq(json_string_value(json_object_get(c, "task_type")),
                     "CAUSAL_LM");
    cr_assert_eq(json_integer_value(json_object_get(c, "r")), 4);
    cr_assert(json_is_integer(json_object_get(c, "lora_alpha")));
    cr_assert_eq(json_integer_value(json_object_get(c, "lora_alpha")), 32);
    json_t *tm = json_object_get(c, "target_modules");
    cr_assert_eq(json_array_size(tm), 4);
    const char *want[] = {"q_proj", "v_proj", "gate_proj", "down_proj"};
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(json_string_value(json_array_get(tm, (size_t)i)),
                         want[i]);
    cr_assert(json_is_real(json_object_get(c, "lora_dropout")));
    cr_assert_eq(json_real_value(json_object_get(c, "lora_dropout")), 0.0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "bias")), "none");
    cr_assert(json_is_false(json_object_get(c, "fan_in_fan_out")));
    cr_assert(json_is_false(json_object_get(c, "use_rslora")));
    cr_assert(json_is_false(json_object_get(c, "use_dora")));
    cr_assert(json_is_true(json_object_get(c, "inference_mode")));
    cr_assert(json_is_null(json_object_get(c, "modules_to_save")));
    cr_assert_eq(json_object_size(json_object_get(c, "rank_pattern")), 0);
    cr_assert_eq(json_object_size(json_object_get(c, "alpha_pattern")), 0);
    /* a qvac adapter names no base model */
    cr_assert_null(json_object_get(c, "base_model_name_or_path"));
    json_decref(c);
    /* keys sorted, two-space indent, as PEFT's save_pretrained */
    size_t n;
    char *text = (char *)slurp(cpath, &n);
    cr_assert_eq(strncmp(text, "{\n  \"alpha_pattern\": {},\n  \"bias\": ", 34),
                 0, "%.60s", text);
    free(text);
}

/* ---- GGUF keys the export reads ------------------------------------- */

typedef struct gedit {
    const char *drop_kv;
    const char *str_key, *str_val; /* set a string KV */
    const char *u32_key;           /* set a u32 KV to u32_val */
    uint32_t u32_val;
    const char *drop_tensor;
    const char *add_tensor;        /* an extra F32 tensor, ne {2, 2} */
    const char *nan_tensor;        /* element 3 set to NaN */
    const char *f16_tensor;        /* written as F16 */
} gedit;

/* A copy of the adapter GGUF `in` with one edit, written to out. */
static void edit_gguf(const char *in, const char *out, const gedit *ed)
{
    qv_gguf *g = NULL;
    qv_gguf_writer *w = NULL;
    qv_err e;
    cr_assert_eq(qv_gguf_open(in, &g, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_gguf_writer_new(&w, &e), QV_OK);
    for (size_t i = 0; i < qv_gguf_kv_count(g); i++) {
        const qv_gguf_kv *kv = qv_gguf_kv_at(g, i);
        if ((ed->drop_kv && !strcmp(kv->key, ed->drop_kv)) ||
            !strcmp(kv->key, "general.alignment"))
            continue;
        if (kv->type == QV_GGUF_STRING) {
            const char *s;
            cr_assert_eq(qv_gguf_get_str(g, kv->key, &s, NULL, &e), QV_OK);
            cr_assert_eq(qv_gguf_writer_set_str(w, kv->key, s, &e), QV_OK);
        } else {
            uint32_t v = 0; /* f32 and u32: 4 bytes */
            cr_assert_eq(qv_gguf_get_val(g, kv->key, kv->type, &v, &e), QV_OK);
            cr_assert_eq(qv_gguf_writer_set_val(w, kv->key, kv->type, &v, &e),
                         QV_OK);
        }
    }
    if (ed->str_key)
        cr_assert_eq(qv_gguf_writer_set_str(w, ed->str_key, ed->str_val, &e),
                     QV_OK);
    if (ed->u32_key)
        cr_assert_eq(qv_gguf_writer_set_u32(w, ed->u32_key, ed->u32_val, &e),
                     QV_OK);
    float **keep = calloc(qv_gguf_tensor_count(g) + 1, sizeof *keep);
    for (size_t i = 0; i < qv_gguf_tensor_count(g); i++) {
        const qv_gguf_tensor *t = qv_gguf_tensor_at(g, i);
        if (ed->drop_tensor && !strcmp(t->name, ed->drop_tensor))
            continue;
        const void *data = t->data;
        uint32_t type = t->type;
        size_t nb = t->nbytes;
        if (ed->nan_tensor && !strcmp(t->name, ed->nan_tensor)) {
            keep[i] = malloc(nb);
            memcpy(keep[i], t->data, nb);
            keep[i][3] = NAN;
            data = keep[i];
        }
        if (ed->f16_tensor && !strcmp(t->name, ed->f16_tensor)) {
            keep[i] = malloc(nb / 2);
            uint16_t *h = (uint16_t *)keep[i];
            for (size_t j = 0; j < nb / 4; j++)
                h[j] = qv_f32_to_f16(((const float *)t->data)[j]);
            data = h;
            type = QV_GGML_F16;
            nb /= 2;
        }
        cr_assert_eq(qv_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne,
                                               type, data, nb, &e), QV_OK,
                     "%s", e.msg);
    }
    static const float four[4] = {1, 2, 3, 4};
    int64_t ne[2] = {2, 2};
    if (ed->add_tensor)
        cr_assert_eq(qv_gguf_writer_add_tensor(w, ed->add_tensor, 2, ne,
                                               QV_GGML_F32, four, 16, &e),
                     QV_OK);
    cr_assert_eq(qv_gguf_write_file(w, out, &e), QV_OK, "%s", e.msg);
    for (size_t i = 0; i < qv_gguf_tensor_count(g); i++)
        free(keep[i]);
    free(keep);
    qv_gguf_writer_free(w);
    qv_gguf_free(g);
}

static qv_status gguf_reads(const char *path, qv_lora **l, qv_err *e)
{
    qv_gguf *g = NULL;
    qv_status s = qv_gguf_open(path, &g, e);
    cr_assert_eq(s, QV_OK, "%s", e->msg);
    *l = NULL;
    s = qv_lora_from_gguf(g, path, l, e);
    qv_gguf_free(g);
    if (s)
        cr_assert_null(*l);
    return s;
}

static void gguf_refused(const char *adapter, const gedit *ed, qv_status want,
                         const char *needle)
{
    char out[256];
    path_in(out, sizeof out, "edited.gguf");
    edit_gguf(adapter, out, ed);
    qv_lora *l;
    qv_err e;
    qv_status s = gguf_reads(out, &l, &e);
    cr_assert_eq(s, want, "%s (want %s): %s", qv_status_name(s),
                 qv_status_name(want), e.msg);
    cr_assert_not_null(strstr(e.msg, "edited.gguf"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, needle), "message '%s' lacks '%s'",
                       e.msg, needle);
}

Test(peft, base_model_name_from_the_gguf)
{
    char base[256], gguf[256], out[256], dir[256];
    make_adapter("named", QV_ACT_SILU, 2, 4.0f, 1u << QV_LIN_Q, base, gguf,
                 sizeof base);
    path_in(out, sizeof out, "named.url.gguf");
    gedit ed = {.str_key = "general.base_model.0.repo_url",
                .str_val = "https://huggingface.co/1bitLLM/bitnet_b1_58-large"};
    edit_gguf(gguf, out, &ed);
    qv_lora *l;
    qv_err e;
    cr_assert_eq(gguf_reads(out, &l, &e), QV_OK, "%s", e.msg);
    cr_assert_str_eq(l->base_model, "1bitLLM/bitnet_b1_58-large");
    path_in(dir, sizeof dir, "named.peft");
    cr_assert_eq(qv_lora_write_peft(l, dir, 0, &e), QV_OK, "%s", e.msg);
    qv_lora_free(&l);
    char cpath[300];
    snprintf(cpath, sizeof cpath, "%s/adapter_config.json", dir);
    json_t *c = json_load_file(cpath, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(c,
                         "base_model_name_or_path")),
                     "1bitLLM/bitnet_b1_58-large");
    json_decref(c);
    /* a name only: taken as it is */
    gedit ed2 = {.str_key = "general.base_model.0.name", .str_val = "BitNet"};
    edit_gguf(gguf, out, &ed2);
    cr_assert_eq(gguf_reads(out, &l, &e), QV_OK, "%s", e.msg);
    cr_assert_str_eq(l->base_model, "BitNet");
    qv_lora_free(&l);
}

Test(peft, gguf_refusals)
{
    char base[256], gguf[256];
    make_adapter("gref", QV_ACT_SILU, 2, 4.0f,
                 (1u << QV_LIN_Q) | (1u << QV_LIN_V), base, gguf, sizeof base);
    /* a model, not an adapter */
    qv_lora *l;
    qv_err e;
    cr_assert_eq(gguf_reads(base, &l, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "no general.type key"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, base), "%s", e.msg);

    gguf_refused(gguf, &(gedit){.str_key = "adapter.type", .str_val = "ia3"},
                 QV_ERR_UNSUPPORTED, "adapter.type is 'ia3', not 'lora'");
    gguf_refused(gguf, &(gedit){.drop_kv = "qvac.lora.rank"}, QV_ERR_CORRUPT,
                 "qvac.lora.rank");
    gguf_refused(gguf, &(gedit){.drop_kv = "adapter.lora.alpha"},
                 QV_ERR_CORRUPT, "adapter.lora.alpha");
    gguf_refused(gguf, &(gedit){.u32_key = "qvac.lora.rank", .u32_val = 3},
                 QV_ERR_CORRUPT, "its rank 2 is not the adapter's r = 3");
    gguf_refused(gguf, &(gedit){.u32_key = "qvac.lora.rank", .u32_val = 0},
                 QV_ERR_CORRUPT, "qvac.lora.rank 0 is not in 1..128");
    gguf_refused(gguf, &(gedit){.str_key = "qvac.lora.targets", .str_val = "q"},
                 QV_ERR_CORRUPT, "adapts v, which is not in qvac.lora.targets 'q'");
    gguf_refused(gguf, &(gedit){.str_key = "qvac.lora.targets",
                                .str_val = "q,v,o"},
                 QV_ERR_CORRUPT, "blk.0.attn_output.weight.lora_a and its "
                                 "lora_b are missing");
    gguf_refused(gguf, &(gedit){.str_key = "qvac.lora.targets",
                                .str_val = "q,lm"},
                 QV_ERR_CORRUPT, "'lm' is not a module");
    gguf_refused(gguf, &(gedit){.drop_tensor = "blk.1.attn_v.weight.lora_b"},
                 QV_ERR_CORRUPT, "blk.1.attn_v.weight.lora_b is missing");
    gguf_refused(gguf, &(gedit){.drop_tensor = "blk.0.attn_q.weight.lora_a"},
                 QV_ERR_CORRUPT, "blk.0.attn_q.weight.lora_a is missing");
    gguf_refused(gguf, &(gedit){.add_tensor = "blk.0.attn_norm.weight"},
                 QV_ERR_CORRUPT, "tensor 'blk.0.attn_norm.weight' is not a "
                                 "LoRA tensor");
    gguf_refused(gguf, &(gedit){.add_tensor = "blk.01.attn_q.weight.lora_a"},
                 QV_ERR_CORRUPT, "'blk.01.attn_q.weight.lora_a' is not a LoRA");
    /* a layer after a gap: layer 3 has q and v, so layers 0..3 must too —
     * the added tensor is 2 x 2, so its shape is named first */
    gguf_refused(gguf, &(gedit){.add_tensor = "blk.5.attn_q.weight.lora_a"},
                 QV_ERR_CORRUPT, "blk.5.attn_q.weight.lora_a' is 2 x 2");
    gguf_refused(gguf, &(gedit){.nan_tensor = "blk.2.attn_q.weight.lora_b"},
                 QV_ERR_CORRUPT, "blk.2.attn_q.weight.lora_b' holds a NaN or "
                                 "infinity");
    gguf_refused(gguf, &(gedit){.f16_tensor = "blk.0.attn_v.weight.lora_a"},
                 QV_ERR_CORRUPT, "is F16 with 2 dimensions; a qvac adapter "
                                 "holds 2-D F32");
}

/* ---- PEFT refusals -------------------------------------------------- */

/* A tensor of a PEFT folder being rewritten: dtype 0 F32, 1 F16, 2 BF16. */
typedef struct ptensor {
    char name[160];
    int dtype;
    int64_t shape[2];
    float *v;
} ptensor;

typedef struct pfolder {
    json_t *config;
    ptensor t[64];
    int n;
} pfolder;

static void load_folder(const char *dir, pfolder *f)
{
    char p[300];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    f->config = json_load_file(p, 0, NULL);
    cr_assert_not_null(f->config);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    qv_st *st;
    qv_err e;
    cr_assert_eq(qv_st_open(p, &st, &e), QV_OK, "%s", e.msg);
    f->n = (int)qv_st_count(st);
    cr_assert_leq(f->n, 64);
    for (int i = 0; i < f->n; i++) {
        const qv_st_tensor *t = qv_st_at(st, (size_t)i);
        snprintf(f->t[i].name, sizeof f->t[i].name, "%s", t->name);
        f->t[i].dtype = 0;
        f->t[i].shape[0] = t->shape[0];
        f->t[i].shape[1] = t->shape[1];
        f->t[i].v = malloc(t->nbytes);
        cr_assert_eq(qv_st_read_f32(t, f->t[i].v, t->n_elems, &e), QV_OK);
    }
    qv_st_free(st);
}

static void free_folder(pfolder *f)
{
    json_decref(f->config);
    for (int i = 0; i < f->n; i++)
        free(f->t[i].v);
}

static ptensor *find_t(pfolder *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name))
            return &f->t[i];
    cr_assert_fail("no tensor %s", name);
    return NULL;
}

static void drop_t(pfolder *f, const char *name)
{
    ptensor *t = find_t(f, name);
    free(t->v);
    *t = f->t[--f->n];
}

/* Writes the folder: the config with jansson, the weights by hand (header
 * JSON, then each tensor's bytes in its dtype), not with the writer. */
static void save_folder(const pfolder *f, const char *dir)
{
    mkdir(dir, 0755);
    char p[300];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    cr_assert_eq(json_dump_file(f->config, p, JSON_INDENT(2)), 0);
    json_t *h = json_object();
    size_t at = 0, total = 0;
    for (int i = 0; i < f->n; i++) {
        const ptensor *t = &f->t[i];
        size_t n = (size_t)(t->shape[0] * t->shape[1]);
        size_t nb = n * (t->dtype ? 2 : 4);
        static const char *dn[] = {"F32", "F16", "BF16"};
        json_object_set_new(h, t->name,
                            json_pack("{s:s,s:[I,I],s:[I,I]}", "dtype",
                                      dn[t->dtype], "shape",
                                      (json_int_t)t->shape[0],
                                      (json_int_t)t->shape[1], "data_offsets",
                                      (json_int_t)at, (json_int_t)(at + nb)));
        at += nb;
    }
    total = at;
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hn = strlen(hs);
    uint8_t *b = malloc(8 + hn + total + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, hs, hn);
    free(hs);
    uint8_t *d = b + 8 + hn;
    for (int i = 0; i < f->n; i++) {
        const ptensor *t = &f->t[i];
        size_t n = (size_t)(t->shape[0] * t->shape[1]);
        for (size_t j = 0; j < n; j++) {
            uint32_t u;
            memcpy(&u, &t->v[j], 4);
            if (t->dtype == 1)
                u = qv_f32_to_f16(t->v[j]);
            else if (t->dtype == 2)
                u >>= 16; /* truncated: the test compares with the same */
            for (int k = 0; k < (t->dtype ? 2 : 4); k++)
                *d++ = (uint8_t)(u >> (8 * k));
        }
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    spit(p, b, 8 + hn + total);
    free(b);
}

/* fixture for the refusals: q and v adapted, rank 2, 3 layers */
static char ref_base[256], ref_gguf[256], ref_dir[256];
static qv_peft_base ref_b;
static char ref_arch[64];

static void ref_fixture(void)
{
    make_adapter("pref", QV_ACT_SILU, 2, 4.0f,
                 (1u << QV_LIN_Q) | (1u << QV_LIN_V), ref_base, ref_gguf,
                 sizeof ref_base);
    path_in(ref_dir, sizeof ref_dir, "pref.peft");
    export_peft(ref_gguf, ref_dir);
    base_of(ref_base, ref_arch, sizeof ref_arch, &ref_b);
}

static int n_edit;

/* Imports the edited folder f; returns the status and message. */
static qv_status try_folder(const pfolder *f, qv_err *e)
{
    char dir[256], nm[64], out[256];
    snprintf(nm, sizeof nm, "edit%d.peft", ++n_edit);
    path_in(dir, sizeof dir, nm);
    save_folder(f, dir);
    snprintf(nm, sizeof nm, "edit%d.gguf", n_edit);
    path_in(out, sizeof out, nm);
    return import_peft(dir, &ref_b, out, e);
}

static void peft_refused(const pfolder *f, qv_status want, const char *needle)
{
    qv_err e;
    qv_status s = try_folder(f, &e);
    cr_assert_eq(s, want, "%s (want %s): %s", qv_status_name(s),
                 qv_status_name(want), e.msg);
    cr_assert_not_null(strstr(e.msg, needle), "message '%s' lacks '%s'",
                       e.msg, needle);
}

/* The config with key set to v (stolen), everything else as exported. */
static void config_refused(const char *key, json_t *v, qv_status want,
                           const char *needle)
{
    pfolder f;
    load_folder(ref_dir, &f);
    json_object_set_new(f.config, key, v);
    peft_refused(&f, want, needle);
    free_folder(&f);
}

Test(peft, config_refusals)
{
    ref_fixture();
    config_refused("use_rslora", json_true(), QV_ERR_UNSUPPORTED,
                   "use_rslora is true: rank-stabilised LoRA");
    config_refused("use_dora", json_true(), QV_ERR_UNSUPPORTED,
                   "use_dora is true");
    config_refused("bias", json_string("lora_only"), QV_ERR_UNSUPPORTED,
                   "bias is 'lora_only'");
    config_refused("bias", json_string("all"), QV_ERR_UNSUPPORTED,
                   "bias must be \"none\"");
    config_refused("fan_in_fan_out", json_true(), QV_ERR_UNSUPPORTED,
                   "fan_in_fan_out is true");
    config_refused("lora_bias", json_true(), QV_ERR_UNSUPPORTED,
                   "lora_bias is true");
    config_refused("rank_pattern", json_pack("{s:i}", "q_proj", 8),
                   QV_ERR_UNSUPPORTED, "rank_pattern is set: a rank per module");
    config_refused("alpha_pattern", json_pack("{s:i}", "v_proj", 8),
                   QV_ERR_UNSUPPORTED, "alpha_pattern is set");
    config_refused("layers_to_transform", json_pack("[i]", 0),
                   QV_ERR_UNSUPPORTED, "layers_to_transform names some layers "
                                       "only");
    config_refused("layers_to_transform", json_pack("[i,i,i]", 0, 1, 1),
                   QV_ERR_UNSUPPORTED, "layers_to_transform");
    config_refused("layers_to_transform", json_integer(1), QV_ERR_UNSUPPORTED,
                   "layers_to_transform");
    config_refused("modules_to_save", json_pack("[s]", "lm_head"),
                   QV_ERR_UNSUPPORTED, "modules_to_save is set");
    config_refused("layer_replication", json_pack("[[i,i]]", 0, 2),
                   QV_ERR_UNSUPPORTED, "layer_replication is set");
    config_refused("trainable_token_indices", json_pack("[i]", 5),
                   QV_ERR_UNSUPPORTED, "trainable_token_indices is set");
    config_refused("alora_invocation_tokens", json_pack("[i]", 5),
                   QV_ERR_UNSUPPORTED, "alora_invocation_tokens is set");
    config_refused("peft_type", json_string("IA3"), QV_ERR_UNSUPPORTED,
                   "peft_type is 'IA3'");
    config_refused("r", json_integer(129), QV_ERR_UNSUPPORTED, "r = 129");
    config_refused("r", json_string("2"), QV_ERR_CORRUPT,
                   "r (the rank) is missing or not a positive integer");
    config_refused("r", json_integer(3), QV_ERR_CORRUPT,
                   "its rank 2 is not the adapter's r = 3");
    config_refused("lora_alpha", json_string("x"), QV_ERR_CORRUPT,
                   "lora_alpha is missing or not a number");
    config_refused("lora_alpha", json_real(1e300), QV_ERR_CORRUPT,
                   "does not fit a float");
    config_refused("use_rslora", json_string("yes"), QV_ERR_CORRUPT,
                   "use_rslora is not a boolean");
    config_refused("target_modules", json_pack("[s,s,s]", "q_proj", "v_proj",
                                               "lm_head"),
                   QV_ERR_UNSUPPORTED, "target_modules names 'lm_head'");
    config_refused("target_modules", json_pack("[s,s,s]", "q_proj", "v_proj",
                                               "k_proj"),
                   QV_ERR_CORRUPT, "target_modules lists k_proj, but "
                                   "adapter_model.safetensors holds no k_proj");
    config_refused("target_modules", json_pack("[s]", "q_proj"),
                   QV_ERR_CORRUPT, "holds v_proj tensors, but target_modules "
                                   "does not list v_proj");
    config_refused("target_modules", json_integer(3), QV_ERR_CORRUPT,
                   "target_modules is neither a list nor a string");
    /* missing peft_type */
    pfolder f;
    load_folder(ref_dir, &f);
    json_object_del(f.config, "peft_type");
    peft_refused(&f, QV_ERR_CORRUPT, "no peft_type");
    free_folder(&f);
}

/* What PEFT allows and qvac holds exactly is accepted. */
Test(peft, config_accepted_variants)
{
    ref_fixture();
    struct { const char *key; json_t *v; } ok[] = {
        {"layers_to_transform", json_pack("[i,i,i]", 2, 0, 1)},
        {"target_modules", json_string("all-linear")},
        {"target_modules", json_pack("[s,s]", "self_attn.v_proj", "q_proj")},
        {"use_rslora", json_false()},
        {"bias", json_null()},
        {"modules_to_save", json_array()},
        {"task_type", json_string("SEQ_2_SEQ_LM")},
        {"lora_dropout", json_real(0.05)},
        {"init_lora_weights", json_string("gaussian")},
        {"some_future_field", json_integer(1)},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        pfolder f;
        load_folder(ref_dir, &f);
        json_object_set_new(f.config, ok[i].key, ok[i].v);
        qv_err e;
        cr_assert_eq(try_folder(&f, &e), QV_OK, "%s: %s", ok[i].key, e.msg);
        free_folder(&f);
    }
    /* and what the import wrote is the original adapter */
    char out[256];
    snprintf(out, sizeof out, "%s/edit%d.gguf", root, n_edit);
    expect_same_file(ref_gguf, out);
}

#define TN(L, mod, ab) \
    "base_model.model.model.layers." #L ".self_attn." #mod "_proj.lora_" #ab ".weight"

Test(peft, weight_refusals)
{
    ref_fixture();
    pfolder f;

    load_folder(ref_dir, &f);
    drop_t(&f, TN(1, v, B));
    peft_refused(&f, QV_ERR_CORRUPT, TN(1, v, B) " is missing");
    free_folder(&f);

    load_folder(ref_dir, &f);
    drop_t(&f, TN(2, q, A));
    peft_refused(&f, QV_ERR_CORRUPT, TN(2, q, A) " is missing");
    free_folder(&f);

    /* v_proj in layer 0 only */
    load_folder(ref_dir, &f);
    drop_t(&f, TN(1, v, A));
    drop_t(&f, TN(1, v, B));
    drop_t(&f, TN(2, v, A));
    drop_t(&f, TN(2, v, B));
    peft_refused(&f, QV_ERR_CORRUPT, "v_proj is adapted in layer 0 but not in "
                                     "layer 1; qvac's targets apply to every "
                                     "layer");
    free_folder(&f);

    /* a tensor that does not belong, with the reason when the name says */
    struct { const char *name, *hint; } extra[] = {
        {"base_model.model.lm_head.lora_A.weight", "output head"},
        {"base_model.model.model.embed_tokens.lora_embedding_A", "embeddings"},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
         "DoRA"},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "a bias"},
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
         "adapter's name"},
        {"base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight",
         "not Llama-style"},
        {"base_model.model.model.layers.0.mlp.q_proj.lora_A.weight", ""},
        {"model.layers.0.self_attn.q_proj.lora_A.weight", ""},
        {"base_model.model.model.layers.00.self_attn.q_proj.lora_A.weight", ""},
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        load_folder(ref_dir, &f);
        ptensor *t = &f.t[f.n++];
        snprintf(t->name, sizeof t->name, "%s", extra[i].name);
        t->dtype = 0;
        t->shape[0] = 2;
        t->shape[1] = 2;
        t->v = calloc(4, sizeof *t->v);
        char needle[300];
        snprintf(needle, sizeof needle, "tensor '%s' is not a LoRA tensor of "
                 "the seven modules", extra[i].name);
        peft_refused(&f, QV_ERR_CORRUPT, needle);
        peft_refused(&f, QV_ERR_CORRUPT, extra[i].hint);
        free_folder(&f);
    }

    /* a layer the base does not have */
    load_folder(ref_dir, &f);
    ptensor *t = find_t(&f, TN(2, q, A));
    snprintf(t->name, sizeof t->name, "%s", TN(3, q, A));
    peft_refused(&f, QV_ERR_CORRUPT, "is for layer 3, but the base model has "
                                     "3 layers");
    free_folder(&f);

    /* shapes: A with the wrong K, B with the wrong N, A transposed */
    load_folder(ref_dir, &f);
    t = find_t(&f, TN(1, q, A));
    t->shape[1] -= 1;
    peft_refused(&f, QV_ERR_CORRUPT, "'" TN(1, q, A) "' is 2 x 31, expected "
                                     "r x K = 2 x 32 (K from the base model)");
    free_folder(&f);
    load_folder(ref_dir, &f);
    t = find_t(&f, TN(0, v, B));
    t->shape[0] = 32; /* v has N = 16 (2 kv heads of 8) */
    float *bigger = calloc(64, sizeof *bigger);
    free(t->v);
    t->v = bigger;
    peft_refused(&f, QV_ERR_CORRUPT, "is 32 x 2, expected N x r = 16 x 2");
    free_folder(&f);
    load_folder(ref_dir, &f);
    t = find_t(&f, TN(0, q, A));
    int64_t r0 = t->shape[0];
    t->shape[0] = t->shape[1];
    t->shape[1] = r0;
    peft_refused(&f, QV_ERR_CORRUPT, "its rank 32 is not the adapter's r = 2");
    free_folder(&f);

    /* not finite */
    load_folder(ref_dir, &f);
    find_t(&f, TN(2, v, A))->v[5] = INFINITY;
    peft_refused(&f, QV_ERR_CORRUPT, TN(2, v, A) "' holds a NaN or infinity "
                                     "at element 5");
    free_folder(&f);

    /* no tensors at all */
    load_folder(ref_dir, &f);
    while (f.n)
        drop_t(&f, f.t[0].name);
    json_object_set_new(f.config, "target_modules", json_array());
    peft_refused(&f, QV_ERR_CORRUPT, "holds no LoRA tensors");
    free_folder(&f);

    /* a base whose shapes differ: named as the base's */
    char other[256], arch[64];
    qv_peft_base ob;
    {
        char g2[256];
        make_adapter("wide", QV_ACT_SILU, 2, 4.0f, 1u << QV_LIN_Q, other, g2,
                     sizeof other);
    }
    base_of(other, arch, sizeof arch, &ob);
    ob.K[0] = 64; /* as if q's input were wider */
    char out[256];
    path_in(out, sizeof out, "wrong-base.gguf");
    qv_err e;
    cr_assert_eq(import_peft(ref_dir, &ob, out, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "expected r x K = 2 x 64 (K from the "
                                     "base model)"), "%s", e.msg);
}

/* F16 and BF16 weights are read as f32, exactly as their values. */
Test(peft, f16_and_bf16_weights)
{
    ref_fixture();
    for (int dt = 1; dt <= 2; dt++) {
        pfolder f;
        load_folder(ref_dir, &f);
        for (int i = 0; i < f.n; i++)
            f.t[i].dtype = dt;
        qv_err e;
        cr_assert_eq(try_folder(&f, &e), QV_OK, "%s", e.msg);
        char out[256];
        snprintf(out, sizeof out, "%s/edit%d.gguf", root, n_edit);
        qv_gguf *g;
        cr_assert_eq(qv_gguf_open(out, &g, &e), QV_OK, "%s", e.msg);
        cr_assert_eq(qv_gguf_tensor_count(g), (size_t)f.n);
        for (int i = 0; i < f.n; i++) {
            int L, m = -1, b;
            char mod[8], ab;
            cr_assert_eq(sscanf(f.t[i].name,
                                "base_model.model.model.layers.%d.self_attn."
                                "%1[qv]_proj.lora_%c.weight", &L, mod, &ab), 3);
            m = mod[0] == 'q' ? QV_LIN_Q : QV_LIN_V;
            b = ab == 'B';
            char gn[64];
            qv_peft_gguf_name(L, m, b, gn, sizeof gn);
            const qv_gguf_tensor *gt = qv_gguf_find_tensor(g, gn);
            cr_assert_not_null(gt, "%s", gn);
            cr_assert_eq(gt->type, QV_GGML_F32);
            const float *v = gt->data;
            size_t n = (size_t)(f.t[i].shape[0] * f.t[i].shape[1]);
            for (size_t j = 0; j < n; j++) {
                float want;
                if (dt == 1) {
                    want = qv_f16_to_f32(qv_f32_to_f16(f.t[i].v[j]));
                } else {
                    uint32_t u;
                    memcpy(&u, &f.t[i].v[j], 4);
                    u &= 0xffff0000u;
                    memcpy(&want, &u, 4);
                }
                cr_assert(memcmp(&v[j], &want, 4) == 0, "%s[%zu]: %a vs %a",
                          gn, j, (double)v[j], (double)want);
            }
        }
        qv_gguf_free(g);
        free_folder(&f);
    }
}

Test(peft, folders)
{
    ref_fixture();
    qv_err e;
    char dir[256], out[256];
    /* no config; a pickle instead of safetensors; not a folder */
    path_in(dir, sizeof dir, "empty.peft");
    mkdir(dir, 0755);
    path_in(out, sizeof out, "folders.gguf");
    cr_assert_eq(import_peft(dir, &ref_b, out, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "is not a PEFT adapter folder: it has no "
                                     "adapter_config.json"), "%s", e.msg);
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/adapter_config.json", ref_dir);
    snprintf(q, sizeof q, "%s/adapter_config.json", dir);
    size_t n;
    uint8_t *cfg = slurp(p, &n);
    spit(q, cfg, n);
    free(cfg);
    cr_assert_eq(import_peft(dir, &ref_b, out, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "has no adapter_model.safetensors"), "%s",
                       e.msg);
    snprintf(q, sizeof q, "%s/adapter_model.bin", dir);
    spit(q, "PK", 2);
    cr_assert_eq(import_peft(dir, &ref_b, out, &e), QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(e.msg, "adapter_model.bin, a pickle"), "%s",
                       e.msg);
    cr_assert_eq(import_peft(ref_gguf, &ref_b, out, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "is not a folder"), "%s", e.msg);
    path_in(dir, sizeof dir, "missing.peft");
    cr_assert_eq(import_peft(dir, &ref_b, out, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, dir), "%s", e.msg);
    /* a config that is not JSON */
    path_in(dir, sizeof dir, "badjson.peft");
    mkdir(dir, 0755);
    snprintf(q, sizeof q, "%s/adapter_config.json", dir);
    spit(q, "{\"r\": 2,", 8);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ref_dir);
    uint8_t *w = slurp(p, &n);
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", dir);
    spit(q, w, n);
    free(w);
    cr_assert_eq(import_peft(dir, &ref_b, out, &e), QV_ERR_CORRUPT);
    cr_assert_not_null(strstr(e.msg, "adapter_config.json is not valid JSON"),
                       "%s", e.msg);

    /* writing: a folder that is not empty needs force; a file is no folder */
    qv_gguf *g;
    qv_lora *l;
    cr_assert_eq(qv_gguf_open(ref_gguf, &g, &e), QV_OK);
    cr_assert_eq(qv_lora_from_gguf(g, ref_gguf, &l, &e), QV_OK);
    qv_gguf_free(g);
    cr_assert_eq(qv_lora_write_peft(l, ref_dir, 0, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "is not empty; pass --force"), "%s",
                       e.msg);
    cr_assert_eq(qv_lora_write_peft(l, ref_dir, 1, &e), QV_OK, "%s", e.msg);
    cr_assert_eq(qv_lora_write_peft(l, ref_gguf, 1, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "exists and is not a folder"), "%s",
                       e.msg);
    path_in(dir, sizeof dir, "no/such/parent");
    cr_assert_eq(qv_lora_write_peft(l, dir, 0, &e), QV_ERR_IO);
    cr_assert_not_null(strstr(e.msg, "its parent does not exist"), "%s", e.msg);
    /* an empty folder that exists is fine */
    path_in(dir, sizeof dir, "made-empty.peft");
    mkdir(dir, 0755);
    cr_assert_eq(qv_lora_write_peft(l, dir, 0, &e), QV_OK, "%s", e.msg);
    qv_lora_free(&l);
}

/* ---- qvac export ---------------------------------------------------- */

static int run(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(peft, qvac_export_command)
{
    ref_fixture();
    const char *b = getenv("QVAC_BIN");
    char bin[512];
    snprintf(bin, sizeof bin, "%s", b ? b : "build/qvac");
    cr_assert_eq(access(bin, X_OK), 0, "no qvac binary at %s (set QVAC_BIN)",
                 bin);
    char cmd[2048], out[8192], dir[256], back[256];
    path_in(dir, sizeof dir, "cli.peft");
    path_in(back, sizeof back, "cli.back.gguf");
    snprintf(cmd, sizeof cmd, "%s export %s --format peft -o %s --json 2>&1",
             bin, ref_gguf, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(j, "rank")), 2);
    cr_assert_eq(json_real_value(json_object_get(j, "alpha")), 4.0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "targets")), "q,v");
    cr_assert_eq(json_integer_value(json_object_get(j, "tensors")), 12);
    cr_assert_eq(json_integer_value(json_object_get(j, "layers")), 3);
    cr_assert_eq(json_array_size(json_object_get(j, "files")), 2);
    json_decref(j);
    /* again: the folder is not empty now */
    snprintf(cmd, sizeof cmd, "%s export %s -o %s 2>&1", bin, ref_gguf, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "pass --force"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s export %s -o %s --force 2>&1", bin, ref_gguf,
             dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "rank 2, alpha 4, targets q,v, 3 layers, "
                                   "12 tensors"), "%s", out);
    /* back, against the base model file */
    snprintf(cmd, sizeof cmd, "%s export %s --format gguf -o %s --model %s "
             "2>&1", bin, dir, back, ref_base);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
    expect_same_file(ref_gguf, back);
    /* the output exists now */
    snprintf(cmd, sizeof cmd, "%s export %s -o %s --model %s 2>&1", bin, dir,
             back, ref_base);
    cr_assert_eq(run(cmd, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "exists; pass --force"), "%s", out);
    /* the built-in model is another base: its shapes are named */
    snprintf(cmd, sizeof cmd, "%s export %s -o %s.2 2>&1", bin, dir, back);
    cr_assert_eq(run(cmd, out, sizeof out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "K from the base model"), "%s", out);
    /* usage errors */
    const char *bad[] = {
        "--format peft -o X",                /* no input */
        "%s --format onnx -o X",             /* format */
        "%s --format gguf -o X",             /* a file as a folder */
        "%s --bogus -o X",                   /* option */
        "%s",                                /* no -o */
        "%s --model M -o X",                 /* --model with peft */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[600];
        snprintf(args, sizeof args, bad[i], ref_gguf);
        snprintf(cmd, sizeof cmd, "%s export %s 2>&1", bin, args);
        cr_assert_eq(run(cmd, out, sizeof out), 2, "%s: %s", args, out);
        cr_assert_not_null(strstr(out, "qvac export --help"), "%s", out);
    }
    snprintf(cmd, sizeof cmd, "%s export --help", bin);
    cr_assert_eq(run(cmd, out, sizeof out), 0);
    cr_assert_not_null(strstr(out, "usage: qvac export"));
}
