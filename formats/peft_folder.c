/* formats/peft_folder.c — see peft.h and docs/formats.md ("PEFT LoRA
 * adapters"): a PEFT folder's adapter_config.json (read with every field
 * qvac cannot hold refused, written as PEFT's save_pretrained writes it)
 * and adapter_model.safetensors, and the folder itself. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/file.h"
#include "formats/peft_impl.h"

/* adapter_config.json is a few hundred bytes; anything past this is not
 * one. */
#define MAX_CONFIG (16u << 20)

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
        if (!strcmp(s, qv_peft_module_target(i)) || !strcmp(s, qv_peft_module_path(i)))
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
        qv_printable(pv, sizeof pv, json_is_string(v) ? json_string_value(v) : "?");
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
            qv_printable(pv, sizeof pv, json_string_value(v));
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
                qv_printable(pv, sizeof pv, json_string_value(x));
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

/* PF_PEFT_PREFIX "L.<path>.lora_A|B.weight" */
static int parse_peft_name(const char *s, int *layer, int *m, int *b)
{
    size_t pn = strlen(PF_PEFT_PREFIX);
    if (strncmp(s, PF_PEFT_PREFIX, pn))
        return 0;
    s += pn;
    if (!pf_parse_layer(&s, layer) || *s++ != '.')
        return 0;
    for (int i = 0; i < QV_PEFT_MODULES; i++) {
        const char *path = qv_peft_module_path(i);
        size_t n = strlen(path);
        if (!strncmp(s, path, n) &&
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
    if (base->n_layers < 1 || base->n_layers > PF_MAX_LAYERS)
        return qv_fail(err, QV_ERR_INVALID, "base model: %d layers",
                       base->n_layers);
    snprintf(l->arch, sizeof l->arch, "%s", base->arch ? base->arch : "");
    if ((s = pf_alloc(l, base->n_layers, err)))
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
        qv_printable(pn, sizeof pn, t->name);
        if (!parse_peft_name(t->name, &L, &m, &b))
            return qv_fail(err, QV_ERR_CORRUPT,
                           "%s: tensor '%s' is not a LoRA tensor of the "
                           "seven modules qvac adapts (" PF_PEFT_FORM ")%s",
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
        if ((s = pf_put_tensor(l, L, m, b, v, t->shape[0], t->shape[1], 1,
                            wwhat, pn, err)))
            return s;
        l->targets |= 1u << m;
    }
    if ((s = pf_check_complete(l, 1, wwhat, err)))
        return s;
    if (pc.has_list && pc.listed != l->targets) {
        for (int m = 0; m < QV_PEFT_MODULES; m++) {
            unsigned bit = 1u << m;
            if ((pc.listed & bit) && !(l->targets & bit))
                return qv_fail(err, QV_ERR_CORRUPT,
                               "%s: target_modules lists %s, but %s holds no "
                               "%s tensor", cwhat, qv_peft_module_target(m),
                               QV_PEFT_WEIGHTS, qv_peft_module_target(m));
            if (!(pc.listed & bit) && (l->targets & bit))
                return qv_fail(err, QV_ERR_CORRUPT,
                               "%s: %s holds %s tensors, but target_modules "
                               "does not list %s", cwhat, QV_PEFT_WEIGHTS,
                               qv_peft_module_target(m), qv_peft_module_target(m));
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
            bad |= json_array_append_new(tm, json_string(qv_peft_module_target(m)));
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
