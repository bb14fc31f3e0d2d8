/* formats/peft.c — see peft.h and docs/formats.md ("PEFT LoRA adapters"):
 * the module names, the in-memory adapter and qvac's adapter GGUF;
 * formats/peft_folder.c reads and writes PEFT folders.
 *
 * Both readers work the same way: every tensor name is parsed into
 * (layer, module, A or B) or refused, shapes are checked against the rank
 * and the module's (N, K) as they arrive, and only then is the set of
 * tensors checked whole (every targeted module in every layer, A with B).
 * Values are copied into f32 arrays owned by the qv_lora, so the files can
 * be closed before anything is written. */
#include "formats/peft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/peft_impl.h"

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
    snprintf(buf, n, PF_PEFT_PREFIX "%d.%s.lora_%c.weight", layer,
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

qv_status pf_alloc(qv_lora *l, int32_t n_layers, qv_err *err)
{
    l->n_layers = n_layers;
    size_t n = (size_t)n_layers * QV_PEFT_MODULES;
    l->a = calloc(n + 1, sizeof *l->a);
    l->b = calloc(n + 1, sizeof *l->b);
    if (!l->a || !l->b)
        return qv_fail(err, QV_ERR_NOMEM, "out of memory for an adapter");
    return QV_OK;
}

int pf_parse_layer(const char **p, int *layer)
{
    const char *s = *p;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return 0;
    int v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v >= PF_MAX_LAYERS)
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
    if (!pf_parse_layer(&s, layer) || *s++ != '.')
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


qv_status pf_put_tensor(qv_lora *l, int layer, int m, int b, float *v,
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

qv_status pf_check_complete(const qv_lora *l, int peft, const char *what,
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
        qv_printable(pv, sizeof pv, v);
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
        qv_printable(pn, sizeof pn, gt->name);
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
    if ((s = pf_alloc(l, max_layer + 1, err)))
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
        if ((s = pf_put_tensor(l, L, m, b, v, gt->ne[1], gt->ne[0], 0, what,
                            gt->name, err)))
            return s;
    }
    return pf_check_complete(l, 0, what, err);
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

