/* formats/peft.c — see peft.h and docs/formats.md ("PEFT LoRA adapters").
 *
 * Both readers work the same way: every tensor name is parsed into
 * (layer, module, A or B) or refused, shapes are checked against the rank
 * and the module's (N, K) as they arrive, and only then is the set of
 * tensors checked whole (every targeted module in every layer, A with B).
 * Values are copied into f32 arrays owned by the qv_lora, so the files can
 * be closed before anything is written. */
#include "formats/peft.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/file.h"

/* More layers than train/model.c's qv_model_config_check allows. */
#define MAX_LAYERS 1024
/* adapter_config.json is a few hundred bytes; anything past this is not
 * one. */
#define MAX_CONFIG (16u << 20)

static const struct {
    const char *qvac, *gguf, *path, *target;
} modules[QV_PEFT_MODULES] = {
    {"q", "attn_q", "self_attn.q_proj", "q_proj"},
    {"k", "attn_k", "self_attn.k_proj", "k_proj"},
    {"v", "attn_v", "self_attn.v_proj", "v_proj"},
    {"o", "attn_output", "self_attn.o_proj", "o_proj"},
    {"gate", "ffn_gate", "mlp.gate_proj", "gate_proj"},
    {"up", "ffn_up", "mlp.up_proj", "up_proj"},
    {"down", "ffn_down", "mlp.down_proj", "down_proj"},
};

#define PEFT_PREFIX "base_model.model.model.layers."
#define PEFT_FORM PEFT_PREFIX "N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj}.lora_{A,B}.weight"

const char *qv_peft_module_qvac(int m)
{
    return m >= 0 && m < QV_PEFT_MODULES ? modules[m].qvac : NULL;
}
const char *qv_peft_module_gguf(int m)
{
    return m >= 0 && m < QV_PEFT_MODULES ? modules[m].gguf : NULL;
}
const char *qv_peft_module_path(int m)
{
    return m >= 0 && m < QV_PEFT_MODULES ? modules[m].path : NULL;
}
const char *qv_peft_module_target(int m)
{
    return m >= 0 && m < QV_PEFT_MODULES ? modules[m].target : NULL;
}

void qv_peft_tensor_name(int layer, int m, int b, char *buf, size_t n)
{
    snprintf(buf, n, PEFT_PREFIX "%d.%s.lora_%c.weight", layer,
             qv_peft_module_path(m) ? qv_peft_module_path(m) : "?",
             b ? 'B' : 'A');
}

void qv_peft_gguf_name(int layer, int m, int b, char *buf, size_t n)
{
    snprintf(buf, n, "blk.%d.%s.weight.lora_%c", layer,
             qv_peft_module_gguf(m) ? qv_peft_module_gguf(m) : "?",
             b ? 'b' : 'a');
}

void qv_peft_format_targets(unsigned mask, char *buf, size_t n)
{
    size_t off = 0;
    if (!n)
        return;
    buf[0] = '\0';
    for (int i = 0; i < QV_PEFT_MODULES && off + 6 < n; i++)
        if (mask & (1u << i))
            off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? "," : "",
                                    modules[i].qvac);
}

qv_status qv_peft_parse_targets(const char *s, unsigned *mask, qv_err *err)
{
    *mask = 0;
    if (!s || !*s)
        return qv_fail(err, QV_ERR_CORRUPT, "targets: empty");
    if (!strcmp(s, "all")) {
        *mask = (1u << QV_PEFT_MODULES) - 1;
        return QV_OK;
    }
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < QV_PEFT_MODULES; i++)
            if (strlen(modules[i].qvac) == len &&
                !strncmp(p, modules[i].qvac, len))
                found = i;
        if (found < 0)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "targets: '%.*s' is not a module (q, k, v, o, "
                           "gate, up, down)", (int)(len > 32 ? 32 : len), p);
        *mask |= 1u << found;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!*mask)
        return qv_fail(err, QV_ERR_CORRUPT, "targets: no module named");
    return QV_OK;
}

/* ---- the in-memory adapter ------------------------------------------ */

void qv_lora_free(qv_lora **pl)
{
    if (!pl || !*pl)
        return;
    qv_lora *l = *pl;
    size_t n = (size_t)l->n_layers * QV_PEFT_MODULES;
    for (size_t i = 0; i < n; i++) {
        if (l->a)
            free(l->a[i]);
        if (l->b)
            free(l->b[i]);
    }
    free(l->a);
    free(l->b);
    free(l);
    *pl = NULL;
}

size_t qv_lora_tensor_count(const qv_lora *l)
{
    size_t n = 0;
    for (int m = 0; m < QV_PEFT_MODULES; m++)
        n += (l->targets >> m) & 1u;
    return 2 * n * (size_t)l->n_layers;
}

static qv_status lora_alloc(qv_lora *l, int32_t n_layers, qv_err *err)
{
    l->n_layers = n_layers;
    size_t n = (size_t)n_layers * QV_PEFT_MODULES;
    l->a = calloc(n + 1, sizeof *l->a);
    l->b = calloc(n + 1, sizeof *l->b);
    if (!l->a || !l->b)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
    return QV_OK;
}

/* A decimal layer number without sign or leading zeros, below MAX_LAYERS;
 * *p is moved past it. */
static int parse_layer(const char **p, int *layer)
{
    const char *s = *p;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    int v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v >= MAX_LAYERS)
            return 0;
        s++;
    }
    *p = s;
    *layer = v;
    return 1;
}

/* "blk.L.<stem>.weight.lora_a|b" */
static int parse_gguf_name(const char *s, int *layer, int *m, int *b)
{
    if (strncmp(s, "blk.", 4))
        return 0;
    s += 4;
    if (!parse_layer(&s, layer) || *s++ != '.')
        return 0;
    for (int i = 0; i < QV_PEFT_MODULES; i++) {
        size_t n = strlen(modules[i].gguf);
        if (!strncmp(s, modules[i].gguf, n) &&
            !strncmp(s + n, ".weight.lora_", 13) &&
            (s[n + 13] == 'a' || s[n + 13] == 'b') && !s[n + 14]) {
            *m = i;
            *b = s[n + 13] == 'b';
            return 1;
        }
    }
    return 0;
}

/* PEFT_PREFIX "L.<path>.lora_A|B.weight" */
static int parse_peft_name(const char *s, int *layer, int *m, int *b)
{
    size_t pn = strlen(PEFT_PREFIX);
    if (strncmp(s, PEFT_PREFIX, pn))
        return 0;
    s += pn;
    if (!parse_layer(&s, layer) || *s++ != '.')
        return 0;
    for (int i = 0; i < QV_PEFT_MODULES; i++) {
        size_t n = strlen(modules[i].path);
        if (!strncmp(s, modules[i].path, n) &&
            !strncmp(s + n, ".lora_", 6) &&
            (s[n + 6] == 'A' || s[n + 6] == 'B') &&
            !strcmp(s + n + 7, ".weight")) {
            *m = i;
            *b = s[n + 6] == 'B';
            return 1;
        }
    }
    return 0;
}

/* Printable, bounded copy of a name from a file for messages. */
static void printable(char *dst, size_t cap, const char *s)
{
    size_t w = 0;
    for (; *s && w + 5 < cap; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            w += (size_t)snprintf(dst + w, cap - w, "\\x%02x", c);
        else
            dst[w++] = (char)c;
    }
    if (*s && w + 3 < cap) {
        memcpy(dst + w, "...", 3);
        w += 3;
    }
    dst[w] = '\0';
}

/* Records one tensor's values (already f32) as A or B of layer / module,
 * checking its shape (rows, cols) against the rank and the module's N / K
 * (base_dims: the base model's; else set by the module's first tensor).
 * `name` is the file's name of the tensor. Takes ownership of v. */
static qv_status put_tensor(qv_lora *l, int layer, int m, int b, float *v,
                            int64_t rows, int64_t cols, int base_dims,
                            const char *what, const char *name, qv_err *err)
{
    size_t k = (size_t)layer * QV_PEFT_MODULES + (size_t)m;
    float **slot = b ? &l->b[k] : &l->a[k];
    if (*slot) { /* both readers refuse duplicate names: cannot happen */
        free(v);
        return qv_fail(err, QV_ERR_CORRUPT, "%s: tensor '%s' given twice",
                       what, name);
    }
    int64_t r = b ? cols : rows, io = b ? rows : cols;
    int32_t *dim = b ? &l->N[m] : &l->K[m];
    if (r != l->rank) {
        free(v);
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor '%s' is %lld x %lld: its rank %lld is not "
                       "the adapter's r = %d", what, name, (long long)rows,
                       (long long)cols, (long long)r, (int)l->rank);
    }
    if (io < 1 || io > INT32_MAX || (*dim && io != *dim)) {
        free(v);
        return qv_fail(err, QV_ERR_CORRUPT,
                       "%s: tensor '%s' is %lld x %lld, expected %s = %d x %d "
                       "(%s from %s)", what, name, (long long)rows,
                       (long long)cols, b ? "N x r" : "r x K",
                       b ? (int)*dim : (int)l->rank,
                       b ? (int)l->rank : (int)*dim, b ? "N" : "K",
                       *dim ? base_dims ? "the base model"
                                        : "the module's other layers"
                            : "nowhere");
    }
    *dim = (int32_t)io;
    size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' holds a NaN or infinity at "
                           "element %zu", what, name, i);
        }
    *slot = v;
    return QV_OK;
}

/* Every targeted module has A and B in every layer; names the first gap
 * with the file's own names (peft: PEFT names, else GGUF's). */
static qv_status check_complete(const qv_lora *l, int peft, const char *what,
                                qv_err *err)
{
    if (!l->targets || l->n_layers < 1)
        return qv_fail(err, QV_ERR_CORRUPT, "%s holds no LoRA tensors", what);
    for (int m = 0; m < QV_PEFT_MODULES; m++) {
        if (!(l->targets & (1u << m)))
            continue;
        /* a layer that has it, for the message */
        int has = -1;
        for (int L = 0; L < l->n_layers && has < 0; L++) {
            size_t k = (size_t)L * QV_PEFT_MODULES + (size_t)m;
            if (l->a[k] || l->b[k])
                has = L;
        }
        for (int L = 0; L < l->n_layers; L++) {
            size_t k = (size_t)L * QV_PEFT_MODULES + (size_t)m;
            if (l->a[k] && l->b[k])
                continue;
            char nm[160];
            if (!l->a[k] && !l->b[k]) {
                if (peft)
                    return qv_fail(err, QV_ERR_CORRUPT,
                                   "%s: %s is adapted in layer %d but not in "
                                   "layer %d; qvac's targets apply to every "
                                   "layer of the model, so it cannot hold "
                                   "this adapter", what, modules[m].target,
                                   has, L);
                qv_peft_gguf_name(L, m, 0, nm, sizeof nm);
                return qv_fail(err, QV_ERR_CORRUPT,
                               "%s: %s and its lora_b are missing (module "
                               "%s is a target in every layer)", what, nm,
                               modules[m].qvac);
            }
            if (peft)
                qv_peft_tensor_name(L, m, l->a[k] != NULL, nm, sizeof nm);
            else
                qv_peft_gguf_name(L, m, l->a[k] != NULL, nm, sizeof nm);
            return qv_fail(err, QV_ERR_CORRUPT, "%s: %s is missing (the "
                           "other half of the pair is there)", what, nm);
        }
    }
    return QV_OK;
}

/* ---- GGUF ----------------------------------------------------------- */

/* A key that must be a string equal to want. */
static qv_status want_str(const qv_gguf *g, const char *key, const char *want,
                          const char *what, const char *hint, qv_err *err)
{
    const char *v = NULL;
    qv_err e;
    qv_status s = qv_gguf_get_str(g, key, &v, NULL, &e);
    if (s == QV_ERR_NOT_FOUND)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: no %s key: %s", what, key,
                       hint);
    if (s)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: %s", what, e.msg);
    if (strcmp(v, want)) {
        char pv[64];
        printable(pv, sizeof pv, v);
        return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: %s is '%s', not '%s': "
                       "%s", what, key, pv, want, hint);
    }
    return QV_OK;
}

static qv_status base_model_name(const qv_gguf *g, qv_lora *l,
                                 const char *what, qv_err *err)
{
    static const char hf[] = "https://huggingface.co/";
    const char *v = NULL, *key = "general.base_model.0.repo_url";
    if (qv_gguf_get_str(g, key, &v, NULL, NULL) == QV_OK) {
        if (!strncmp(v, hf, sizeof hf - 1) && v[sizeof hf - 1])
            v += sizeof hf - 1;
    } else {
        key = "general.base_model.0.name";
        if (qv_gguf_get_str(g, key, &v, NULL, NULL) != QV_OK)
            return QV_OK;
    }
    if (strlen(v) >= sizeof l->base_model)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: %s is longer than %zu "
                       "bytes", what, key, sizeof l->base_model - 1);
    memcpy(l->base_model, v, strlen(v) + 1);
    return QV_OK;
}

static qv_status from_gguf(const qv_gguf *g, const char *what, qv_lora *l,
                           qv_err *err)
{
    static const char *not_ours =
        "qvac exports the adapters it writes (qvac finetune's adapter.gguf)";
    qv_status s;
    if ((s = want_str(g, "general.type", "adapter", what, not_ours, err)) ||
        (s = want_str(g, "adapter.type", "lora", what, not_ours, err)))
        return s;
    const char *arch = NULL, *t = NULL;
    uint32_t r = 0;
    qv_err e;
    if ((s = qv_gguf_get_str(g, "general.architecture", &arch, NULL, &e)) ||
        (s = qv_gguf_get_f32(g, "adapter.lora.alpha", &l->alpha, &e)) ||
        (s = qv_gguf_get_u32(g, "qvac.lora.rank", &r, &e)) ||
        (s = qv_gguf_get_str(g, "qvac.lora.targets", &t, NULL, &e)))
        return qv_fail(err, QV_ERR_CORRUPT, "%s: %s (%s)", what, e.msg,
                       not_ours);
    if (strlen(arch) >= sizeof l->arch || !*arch)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: general.architecture is "
                       "empty or too long", what);
    memcpy(l->arch, arch, strlen(arch) + 1);
    if (!isfinite(l->alpha))
        return qv_fail(err, QV_ERR_CORRUPT, "%s: adapter.lora.alpha is not "
                       "finite", what);
    if (r < 1 || r > QV_PEFT_MAX_RANK)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: qvac.lora.rank %u is not in "
                       "1..%d", what, r, QV_PEFT_MAX_RANK);
    l->rank = (int32_t)r;
    if ((s = qv_peft_parse_targets(t, &l->targets, &e)))
        return qv_fail(err, s, "%s: qvac.lora.targets: %s", what, e.msg);
    if ((s = base_model_name(g, l, what, err)))
        return s;

    /* names first: the layer count is the highest layer + 1 */
    size_t nt = qv_gguf_tensor_count(g);
    int max_layer = -1;
    for (size_t i = 0; i < nt; i++) {
        const qv_gguf_tensor *gt = qv_gguf_tensor_at(g, i);
        int L, m, b;
        char pn[100];
        printable(pn, sizeof pn, gt->name);
        if (!parse_gguf_name(gt->name, &L, &m, &b))
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' is not a LoRA tensor of the seven "
                           "modules (blk.N.{attn_q,attn_k,attn_v,attn_output,"
                           "ffn_gate,ffn_up,ffn_down}.weight.lora_{a,b})",
                           what, pn);
        if (!(l->targets & (1u << m))) {
            char tg[64];
            qv_peft_format_targets(l->targets, tg, sizeof tg);
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' adapts %s, which is not in "
                           "qvac.lora.targets '%s'", what, pn, modules[m].qvac,
                           tg);
        }
        if (gt->type != QV_GGML_F32 || gt->n_dims != 2)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' is %s with %u dimensions; a qvac "
                           "adapter holds 2-D F32", what, pn,
                           qv_ggml_type_name(gt->type) ? qv_ggml_type_name(gt->type)
                                                       : "?", gt->n_dims);
        if (L > max_layer)
            max_layer = L;
    }
    if ((s = lora_alloc(l, max_layer + 1, err)))
        return s;
    for (size_t i = 0; i < nt; i++) {
        const qv_gguf_tensor *gt = qv_gguf_tensor_at(g, i);
        int L, m, b;
        parse_gguf_name(gt->name, &L, &m, &b);
        float *v = malloc(gt->nbytes ? gt->nbytes : 1);
        if (!v)
            return qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
        memcpy(v, gt->data, gt->nbytes);
        /* ne {cols, rows}: ggml lists the row-major shape backwards */
        if ((s = put_tensor(l, L, m, b, v, gt->ne[1], gt->ne[0], 0, what,
                            gt->name, err)))
            return s;
    }
    return check_complete(l, 0, what, err);
}

qv_status qv_lora_from_gguf(const qv_gguf *g, const char *what,
                            qv_lora **out, qv_err *err)
{
    if (!g || !out || !what)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_from_gguf: NULL argument");
    *out = NULL;
    qv_lora *l = calloc(1, sizeof *l);
    if (!l)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
    qv_status s = from_gguf(g, what, l, err);
    if (s) {
        qv_lora_free(&l);
        return s;
    }
    *out = l;
    return QV_OK;
}

qv_status qv_lora_write_gguf(const qv_lora *l, const char *path, qv_err *err)
{
    if (!l || !path || !l->arch[0])
        return qv_fail(err, QV_ERR_INVALID,
                       "qv_lora_write_gguf: NULL argument or no architecture");
    char t[64];
    qv_peft_format_targets(l->targets, t, sizeof t);
    qv_gguf_writer *w = NULL;
    qv_status s = qv_gguf_writer_new(&w, err);
    /* the keys, in order, of train/train.c's qv_adapter_save */
#define TRY(x) do { if (!s) s = (x); } while (0)
    TRY(qv_gguf_writer_set_str(w, "general.architecture", l->arch, err));
    TRY(qv_gguf_writer_set_str(w, "general.type", "adapter", err));
    TRY(qv_gguf_writer_set_str(w, "adapter.type", "lora", err));
    TRY(qv_gguf_writer_set_f32(w, "adapter.lora.alpha", l->alpha, err));
    TRY(qv_gguf_writer_set_u32(w, "qvac.lora.rank", (uint32_t)l->rank, err));
    TRY(qv_gguf_writer_set_str(w, "qvac.lora.targets", t, err));
    for (int L = 0; L < l->n_layers && !s; L++)
        for (int m = 0; m < QV_PEFT_MODULES && !s; m++) {
            if (!(l->targets & (1u << m)))
                continue;
            size_t k = (size_t)L * QV_PEFT_MODULES + (size_t)m;
            char name[64];
            int64_t ne_a[2] = {l->K[m], l->rank}, ne_b[2] = {l->rank, l->N[m]};
            qv_peft_gguf_name(L, m, 0, name, sizeof name);
            TRY(qv_gguf_writer_add_tensor(
                w, name, 2, ne_a, QV_GGML_F32, l->a[k],
                (size_t)l->rank * (size_t)l->K[m] * 4, err));
            qv_peft_gguf_name(L, m, 1, name, sizeof name);
            TRY(qv_gguf_writer_add_tensor(
                w, name, 2, ne_b, QV_GGML_F32, l->b[k],
                (size_t)l->N[m] * (size_t)l->rank * 4, err));
        }
    TRY(qv_gguf_write_file(w, path, err));
#undef TRY
    qv_gguf_writer_free(w);
    return s;
}

/* ---- PEFT: adapter_config.json -------------------------------------- */

/* A field that must be absent, null or false. */
static qv_status no_true(const json_t *c, const char *key, const char *why,
                         const char *what, qv_err *err)
{
    const json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v) || json_is_false(v))
        return QV_OK;
    if (json_is_true(v))
        return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: %s is true: %s", what,
                       key, why);
    return qv_fail(err, QV_ERR_CORRUPT, "%s: %s is not a boolean", what, key);
}

/* A field that must be absent, null, or an empty object / array. */
static qv_status no_items(const json_t *c, const char *key, const char *why,
                          const char *what, qv_err *err)
{
    const json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v) ||
        (json_is_object(v) && json_object_size(v) == 0) ||
        (json_is_array(v) && json_array_size(v) == 0))
        return QV_OK;
    return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: %s is set: %s", what, key,
                   why);
}

/* The module of a target_modules entry ("q_proj" or "self_attn.q_proj");
 * -1 when it names none of the seven. */
static int target_module(const char *s)
{
    for (int i = 0; i < QV_PEFT_MODULES; i++)
        if (!strcmp(s, modules[i].target) || !strcmp(s, modules[i].path))
            return i;
    return -1;
}

typedef struct peft_cfg {
    unsigned listed;    /* target_modules as a list: its modules */
    int has_list;
} peft_cfg;

static qv_status read_config(const json_t *c, const qv_peft_base *base,
                             qv_lora *l, peft_cfg *pc, const char *what,
                             qv_err *err)
{
    if (!json_is_object(c))
        return qv_fail(err, QV_ERR_CORRUPT, "%s: not a JSON object", what);
    const json_t *v = json_object_get(c, "peft_type");
    if (!v)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: no peft_type (is it a PEFT "
                       "adapter_config.json?)", what);
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA")) {
        char pv[40];
        printable(pv, sizeof pv, json_is_string(v) ? json_string_value(v) : "?");
        return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: peft_type is '%s': qvac "
                       "reads LORA adapters only", what, pv);
    }
    v = json_object_get(c, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return qv_fail(err, QV_ERR_CORRUPT, "%s: r (the rank) is missing or "
                       "not a positive integer", what);
    if (json_integer_value(v) > QV_PEFT_MAX_RANK)
        return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: r = %lld; qvac's "
                       "adapters have rank 1..%d", what,
                       (long long)json_integer_value(v), QV_PEFT_MAX_RANK);
    l->rank = (int32_t)json_integer_value(v);
    v = json_object_get(c, "lora_alpha");
    if (!json_is_number(v))
        return qv_fail(err, QV_ERR_CORRUPT, "%s: lora_alpha is missing or "
                       "not a number", what);
    double alpha = json_number_value(v);
    l->alpha = (float)alpha;
    if (!isfinite(l->alpha))
        return qv_fail(err, QV_ERR_CORRUPT, "%s: lora_alpha %g does not fit "
                       "a float", what, alpha);

    qv_status s;
    if ((s = no_true(c, "use_rslora", "rank-stabilised LoRA scales by "
                     "alpha/sqrt(r); qvac's adapters scale by alpha/r",
                     what, err)) ||
        (s = no_true(c, "use_dora", "DoRA's magnitude vectors have no place "
                     "in a qvac adapter", what, err)) ||
        (s = no_true(c, "fan_in_fan_out", "the weights are stored "
                     "transposed (Conv1D layers); qvac's are not", what, err)) ||
        (s = no_true(c, "lora_bias", "a bias on lora_B has no place in a "
                     "qvac adapter", what, err)) ||
        (s = no_true(c, "use_qalora", "QALoRA pools the input; qvac does "
                     "not", what, err)) ||
        (s = no_items(c, "rank_pattern", "a rank per module; qvac has one "
                      "rank", what, err)) ||
        (s = no_items(c, "alpha_pattern", "an alpha per module; qvac has one "
                      "alpha", what, err)) ||
        (s = no_items(c, "modules_to_save", "fully trained modules; qvac's "
                      "adapters hold LoRA pairs only", what, err)) ||
        (s = no_items(c, "layer_replication", "layers repeated; qvac adapts "
                      "the base's layers as they are", what, err)) ||
        (s = no_items(c, "trainable_token_indices", "trained embedding rows; "
                      "qvac's adapters hold LoRA pairs only", what, err)) ||
        (s = no_items(c, "target_parameters", "LoRA on parameters rather "
                      "than modules", what, err)) ||
        (s = no_items(c, "alora_invocation_tokens", "an activated LoRA "
                      "applies after its invocation only; qvac's applies "
                      "everywhere", what, err)))
        return s;
    v = json_object_get(c, "bias");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return qv_fail(err, QV_ERR_CORRUPT, "%s: bias is not a string",
                           what);
        if (strcmp(json_string_value(v), "none")) {
            char pv[40];
            printable(pv, sizeof pv, json_string_value(v));
            return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: bias is '%s': "
                           "trained biases have no place in a qvac adapter "
                           "(bias must be \"none\")", what, pv);
        }
    }
    v = json_object_get(c, "layers_to_transform");
    if (v && !json_is_null(v)) {
        /* fine only when it names every layer of the base */
        int ok = 0;
        if (json_is_integer(v))
            ok = base->n_layers == 1 && json_integer_value(v) == 0;
        else if (json_is_array(v) &&
                 json_array_size(v) == (size_t)base->n_layers) {
            unsigned char *seen = calloc((size_t)base->n_layers + 1, 1);
            if (!seen)
                return qv_fail(err, QV_ERR_NOMEM, "out of memory");
            ok = 1;
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) {
                json_int_t L = json_is_integer(x) ? json_integer_value(x) : -1;
                if (L < 0 || L >= base->n_layers || seen[L])
                    ok = 0;
                else
                    seen[L] = 1;
            }
            free(seen);
        }
        if (!ok)
            return qv_fail(err, QV_ERR_UNSUPPORTED, "%s: layers_to_transform "
                           "names some layers only; qvac's targets apply to "
                           "every layer of the model (%d)", what,
                           base->n_layers);
    }
    v = json_object_get(c, "target_modules");
    if (json_is_array(v)) {
        pc->has_list = 1;
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_string(x))
                return qv_fail(err, QV_ERR_CORRUPT, "%s: target_modules[%zu] "
                               "is not a string", what, i);
            int m = target_module(json_string_value(x));
            if (m < 0) {
                char pv[64];
                printable(pv, sizeof pv, json_string_value(x));
                return qv_fail(err, QV_ERR_UNSUPPORTED,
                               "%s: target_modules names '%s'; qvac adapts "
                               "q_proj, k_proj, v_proj, o_proj, gate_proj, "
                               "up_proj and down_proj only", what, pv);
            }
            pc->listed |= 1u << m;
        }
    } else if (v && !json_is_null(v) && !json_is_string(v)) {
        /* a string is PEFT's regular expression or "all-linear": the
         * tensors say what it matched */
        return qv_fail(err, QV_ERR_CORRUPT, "%s: target_modules is neither a "
                       "list nor a string", what);
    }
    v = json_object_get(c, "base_model_name_or_path");
    if (json_is_string(v) &&
        strlen(json_string_value(v)) < sizeof l->base_model)
        memcpy(l->base_model, json_string_value(v),
               strlen(json_string_value(v)) + 1);
    return QV_OK;
}

/* Why a tensor name is not one qvac reads, when the name says. */
static const char *name_hint(const char *s)
{
    if (strstr(s, "lora_magnitude_vector"))
        return " (a DoRA magnitude vector)";
    if (strstr(s, "embed") || strstr(s, "lm_head"))
        return " (embeddings or the output head: qvac adapts the seven "
               "linear modules of each layer only)";
    size_t n = strlen(s);
    if (n > 5 && !strcmp(s + n - 5, ".bias"))
        return " (a bias)";
    if ((n > 14 && (!strcmp(s + n - 14, ".lora_A.weight") ||
                    !strcmp(s + n - 14, ".lora_B.weight"))))
        return " (a module qvac does not adapt, or a model whose layers are "
               "not Llama-style)";
    if (strstr(s, ".lora_A.") || strstr(s, ".lora_B."))
        return " (PEFT saves without the adapter's name, e.g. .default: is "
               "this the live model's state_dict?)";
    return "";
}

static qv_status from_peft(const json_t *c, const qv_st *st,
                           const qv_peft_base *base, const char *what,
                           qv_lora *l, qv_err *err)
{
    char cwhat[600], wwhat[600];
    snprintf(cwhat, sizeof cwhat, "%s/" QV_PEFT_CONFIG, what);
    snprintf(wwhat, sizeof wwhat, "%s/" QV_PEFT_WEIGHTS, what);
    peft_cfg pc = {0};
    qv_status s = read_config(c, base, l, &pc, cwhat, err);
    if (s)
        return s;
    if (base->n_layers < 1 || base->n_layers > MAX_LAYERS)
        return qv_fail(err, QV_ERR_INVALID, "base model: %d layers",
                       base->n_layers);
    snprintf(l->arch, sizeof l->arch, "%s", base->arch ? base->arch : "");
    if ((s = lora_alloc(l, base->n_layers, err)))
        return s;
    for (int m = 0; m < QV_PEFT_MODULES; m++) {
        l->N[m] = base->N[m];
        l->K[m] = base->K[m];
    }
    size_t nt = qv_st_count(st);
    for (size_t i = 0; i < nt; i++) {
        const qv_st_tensor *t = qv_st_at(st, i);
        int L, m, b;
        char pn[160];
        printable(pn, sizeof pn, t->name);
        if (!parse_peft_name(t->name, &L, &m, &b))
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' is not a LoRA tensor of the "
                           "seven modules qvac adapts (" PEFT_FORM ")%s",
                           wwhat, pn, name_hint(t->name));
        if (L >= base->n_layers)
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' is for layer %d, but the base "
                           "model has %d layers (is it the right base "
                           "model?)", wwhat, pn, L, base->n_layers);
        if (t->n_dims != 2)
            return qv_fail(err, QV_ERR_CORRUPT, "%s: tensor '%s' has %u "
                           "dimensions, not 2", wwhat, pn, t->n_dims);
        size_t n = (size_t)t->n_elems;
        float *v = malloc(n ? n * sizeof *v : 1);
        if (!v)
            return qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
        if ((s = qv_st_read_f32(t, v, n, err))) {
            free(v);
            return s;
        }
        if ((s = put_tensor(l, L, m, b, v, t->shape[0], t->shape[1], 1,
                            wwhat, pn, err)))
            return s;
        l->targets |= 1u << m;
    }
    if ((s = check_complete(l, 1, wwhat, err)))
        return s;
    if (pc.has_list && pc.listed != l->targets) {
        for (int m = 0; m < QV_PEFT_MODULES; m++) {
            unsigned bit = 1u << m;
            if ((pc.listed & bit) && !(l->targets & bit))
                return qv_fail(err, QV_ERR_CORRUPT,
                               "%s: target_modules lists %s, but %s holds no "
                               "%s tensor", cwhat, modules[m].target,
                               QV_PEFT_WEIGHTS, modules[m].target);
            if (!(pc.listed & bit) && (l->targets & bit))
                return qv_fail(err, QV_ERR_CORRUPT,
                               "%s: %s holds %s tensors, but target_modules "
                               "does not list %s", cwhat, QV_PEFT_WEIGHTS,
                               modules[m].target, modules[m].target);
        }
    }
    return QV_OK;
}

qv_status qv_lora_from_peft(const char *config, size_t config_n,
                            const qv_st *weights, const qv_peft_base *base,
                            const char *what, qv_lora **out, qv_err *err)
{
    if (!config || !weights || !base || !what || !out)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_from_peft: NULL argument");
    *out = NULL;
    json_error_t je;
    json_t *c = json_loadb(config, config_n, JSON_REJECT_DUPLICATES, &je);
    if (!c)
        return qv_fail(err, QV_ERR_CORRUPT, "%s/" QV_PEFT_CONFIG " is not "
                       "valid JSON: %s (line %d)", what, je.text, je.line);
    qv_lora *l = calloc(1, sizeof *l);
    qv_status s = l ? from_peft(c, weights, base, what, l, err)
                    : qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
    json_decref(c);
    if (s) {
        qv_lora_free(&l);
        return s;
    }
    *out = l;
    return QV_OK;
}

qv_status qv_lora_peft_config(const qv_lora *l, char **json, qv_err *err)
{
    if (!l || !json)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_peft_config: NULL argument");
    *json = NULL;
    json_t *c = json_object(), *tm = json_array();
    int bad = !c || !tm;
    for (int m = 0; m < QV_PEFT_MODULES && !bad; m++)
        if (l->targets & (1u << m))
            bad |= json_array_append_new(tm, json_string(modules[m].target));
    /* an integral alpha as PEFT's usual integer, else the float's shortest
     * exact decimal (9 significant digits bring every float back) */
    int integral = l->alpha == floorf(l->alpha) && fabsf(l->alpha) < 1e15f &&
                   !(l->alpha == 0.0f && signbit(l->alpha));
    json_t *alpha = integral ? json_integer((json_int_t)l->alpha)
                             : json_real((double)l->alpha);
    if (!bad) {
        bad |= json_object_set_new(c, "peft_type", json_string("LORA"));
        bad |= json_object_set_new(c, "task_type", json_string("CAUSAL_LM"));
        bad |= json_object_set_new(c, "r", json_integer(l->rank));
        bad |= json_object_set_new(c, "lora_alpha", alpha);
        alpha = NULL;
        bad |= json_object_set_new(c, "target_modules", tm);
        tm = NULL;
        bad |= json_object_set_new(c, "lora_dropout", json_real(0.0));
        bad |= json_object_set_new(c, "bias", json_string("none"));
        bad |= json_object_set_new(c, "fan_in_fan_out", json_false());
        bad |= json_object_set_new(c, "use_rslora", json_false());
        bad |= json_object_set_new(c, "use_dora", json_false());
        bad |= json_object_set_new(c, "inference_mode", json_true());
        bad |= json_object_set_new(c, "modules_to_save", json_null());
        bad |= json_object_set_new(c, "rank_pattern", json_object());
        bad |= json_object_set_new(c, "alpha_pattern", json_object());
        bad |= json_object_set_new(c, "layers_to_transform", json_null());
        if (l->base_model[0])
            bad |= json_object_set_new(c, "base_model_name_or_path",
                                       json_string(l->base_model));
    }
    json_decref(alpha);
    json_decref(tm);
    char *s = bad ? NULL
                  : json_dumps(c, JSON_INDENT(2) | JSON_SORT_KEYS |
                                      JSON_REAL_PRECISION(9));
    json_decref(c);
    if (!s)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory writing "
                       QV_PEFT_CONFIG " (or a name that is not UTF-8)");
    /* PEFT's file ends without a newline, as json.dumps; so does this */
    *json = s;
    return QV_OK;
}

qv_status qv_lora_peft_weights(const qv_lora *l, qv_st_writer **out,
                               qv_err *err)
{
    if (!l || !out)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_peft_weights: NULL argument");
    qv_st_writer *w = NULL;
    qv_status s = qv_st_writer_new(&w, err);
    if (!s)
        s = qv_st_writer_set_meta(w, "format", "pt", err);
    for (int L = 0; L < l->n_layers && !s; L++)
        for (int m = 0; m < QV_PEFT_MODULES && !s; m++) {
            if (!(l->targets & (1u << m)))
                continue;
            size_t k = (size_t)L * QV_PEFT_MODULES + (size_t)m;
            char name[128];
            int64_t sa[2] = {l->rank, l->K[m]}, sb[2] = {l->N[m], l->rank};
            qv_peft_tensor_name(L, m, 0, name, sizeof name);
            s = qv_st_writer_add_f32(w, name, 2, sa, l->a[k], err);
            qv_peft_tensor_name(L, m, 1, name, sizeof name);
            if (!s)
                s = qv_st_writer_add_f32(w, name, 2, sb, l->b[k], err);
        }
    if (s) {
        qv_st_writer_free(w);
        return s;
    }
    *out = w;
    return QV_OK;
}

/* ---- PEFT folders --------------------------------------------------- */

static char *join(const char *dir, const char *file)
{
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, file, b + 1);
    }
    return p;
}

/* dir exists as an empty folder (made here when missing), or force. */
static qv_status out_dir(const char *dir, int force, qv_err *err)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return qv_fail(err, QV_ERR_IO, "cannot look at '%s': %s", dir,
                           strerror(errno));
        if (mkdir(dir, 0755) != 0)
            return qv_fail(err, QV_ERR_IO, "cannot create the folder '%s': "
                           "%s%s", dir, strerror(errno),
                           errno == ENOENT ? " (its parent does not exist)"
                                           : "");
        return QV_OK;
    }
    if (!S_ISDIR(sb.st_mode))
        return qv_fail(err, QV_ERR_INVALID, "'%s' exists and is not a "
                       "folder; give a folder for the PEFT adapter", dir);
    if (force)
        return QV_OK;
    DIR *d = opendir(dir);
    if (!d)
        return qv_fail(err, QV_ERR_IO, "cannot read the folder '%s': %s", dir,
                       strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    if (!empty)
        return qv_fail(err, QV_ERR_INVALID, "the folder '%s' is not empty; "
                       "pass --force to replace " QV_PEFT_CONFIG " and "
                       QV_PEFT_WEIGHTS " in it", dir);
    return QV_OK;
}

qv_status qv_lora_write_peft(const qv_lora *l, const char *dir, int force,
                             qv_err *err)
{
    if (!l || !dir || !*dir)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_write_peft: NULL argument");
    char *cfg = NULL, *cpath = join(dir, QV_PEFT_CONFIG),
         *wpath = join(dir, QV_PEFT_WEIGHTS);
    qv_st_writer *w = NULL;
    qv_status s = cpath && wpath ? QV_OK
                                 : qv_fail(err, QV_ERR_NOMEM, "out of memory");
    if (!s)
        s = qv_lora_peft_config(l, &cfg, err);
    if (!s)
        s = qv_lora_peft_weights(l, &w, err);
    if (!s)
        s = out_dir(dir, force, err);
    /* the weights first: a folder with a config is a PEFT adapter to
     * whoever looks, so the config comes last */
    if (!s)
        s = qv_st_write_file(w, wpath, err);
    if (!s) {
        qv_file_part p = {cfg, strlen(cfg)};
        s = qv_file_write_atomic(cpath, "PEFT config", &p, 1, err);
    }
    qv_st_writer_free(w);
    free(cfg);
    free(cpath);
    free(wpath);
    return s;
}

qv_status qv_lora_read_peft(const char *dir, const qv_peft_base *base,
                            qv_lora **out, qv_err *err)
{
    if (!dir || !base || !out)
        return qv_fail(err, QV_ERR_INVALID, "qv_lora_read_peft: NULL argument");
    *out = NULL;
    char *cpath = join(dir, QV_PEFT_CONFIG), *wpath = join(dir, QV_PEFT_WEIGHTS),
         *bin = join(dir, "adapter_model.bin");
    void *cmap = NULL;
    size_t clen = 0;
    qv_st *st = NULL;
    struct stat sb;
    qv_status s = cpath && wpath && bin
                      ? QV_OK
                      : qv_fail(err, QV_ERR_NOMEM, "out of memory");
    if (!s && stat(dir, &sb) != 0)
        s = qv_fail(err, errno == ENOENT ? QV_ERR_NOT_FOUND : QV_ERR_IO,
                    "cannot open the PEFT adapter folder '%s': %s", dir,
                    strerror(errno));
    if (!s && !S_ISDIR(sb.st_mode))
        s = qv_fail(err, QV_ERR_INVALID, "'%s' is not a folder (a PEFT "
                    "adapter is a folder with " QV_PEFT_CONFIG " and "
                    QV_PEFT_WEIGHTS ")", dir);
    if (!s && (s = qv_file_map(cpath, "PEFT config", &cmap, &clen, err)) ==
                  QV_ERR_NOT_FOUND)
        s = qv_fail(err, s, "'%s' is not a PEFT adapter folder: it has no "
                    QV_PEFT_CONFIG, dir);
    if (!s && clen > MAX_CONFIG)
        s = qv_fail(err, QV_ERR_CORRUPT, "'%s' is %zu bytes: not a PEFT "
                    "config", cpath, clen);
    if (!s && (s = qv_st_open(wpath, &st, err)) == QV_ERR_NOT_FOUND) {
        if (stat(bin, &sb) == 0)
            s = qv_fail(err, QV_ERR_UNSUPPORTED, "'%s' holds adapter_model.bin, "
                        "a pickle (loading one can run code): qvac reads "
                        QV_PEFT_WEIGHTS " only; save the adapter with "
                        "safe_serialization=True, or convert it", dir);
        else
            s = qv_fail(err, s, "'%s' has no " QV_PEFT_WEIGHTS, dir);
    }
    if (!s)
        s = qv_lora_from_peft(cmap ? cmap : "", clen, st, base, dir, out, err);
    qv_st_free(st);
    qv_file_unmap(cmap, clen);
    free(cpath);
    free(wpath);
    free(bin);
    return s;
}
