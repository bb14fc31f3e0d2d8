/* cli/cmd_export.c — qvac export: a qvac LoRA adapter (GGUF) to a Hugging
 * Face PEFT folder and back (formats/peft.h does the work). The base model
 * a PEFT adapter belongs to says the architecture and the layer count it
 * does not carry: --model, or the built-in model. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/embedded.h"
#include "formats/gguf.h"
#include "formats/peft.h"
#include "train/model.h"

#define BUILTIN_MODEL "model/qvac-tiny.gguf"

void qv_help_export(FILE *out)
{
    fprintf(out,
        "usage: qvac export ADAPTER.gguf --format peft -o DIR [--force] [--json]\n"
        "       qvac export PEFT_DIR --format gguf -o ADAPTER.gguf [--model BASE.gguf]\n"
        "                   [--force] [--json]\n\n"
        "Converts a LoRA adapter between qvac's GGUF (what `qvac finetune` writes, and\n"
        "llama.cpp's --lora reads) and a Hugging Face PEFT folder (adapter_config.json\n"
        "and adapter_model.safetensors, what PeftModel.from_pretrained reads). The\n"
        "tensors are the same numbers both ways: GGUF -> PEFT -> GGUF gives the same\n"
        "file, byte for byte. What qvac cannot hold exactly (rsLoRA, DoRA, biases,\n"
        "modules other than q/k/v/o/gate/up/down, a module in some layers only,\n"
        "per-module ranks, ...) is refused, naming the field or tensor.\n\n"
        "options:\n"
        "  --format F      peft (from a GGUF file) or gguf (from a PEFT folder);\n"
        "                  by default, whichever the input is not\n"
        "  -o, --out P     the folder (peft) or file (gguf) to write\n"
        "  -m, --model FILE  gguf only: the base model the adapter was trained on\n"
        "                  (its architecture and layer shapes; default: the built-in\n"
        "                  model)\n"
        "  --force         write into a folder that is not empty, or over a file\n"
        "  --json          print a summary as JSON: files, rank, alpha, targets,\n"
        "                  layers, tensors\n"
        "  -h, --help      this help\n");
}

/* The base model's shapes, from --model or the built-in model, without
 * decoding a weight (qv_model_inspect). */
static qv_status load_base(const char *path, char *arch, size_t arch_n,
                           qv_peft_base *b, qv_err *err)
{
    qv_gguf *g = NULL;
    const char *what = path ? path : "the built-in model";
    qv_status s;
    if (path) {
        s = qv_gguf_open(path, &g, err);
    } else {
        const qv_embedded_file *f = qv_embedded_find(BUILTIN_MODEL);
        if (!f)
            return qv_fail(err, QV_ERR_NOT_FOUND,
                           "this build has no built-in model (data/model/"
                           "qvac-tiny.gguf was missing when it was built); "
                           "pass --model BASE.gguf");
        s = qv_gguf_parse(f->data, f->size, &g, err);
    }
    if (s)
        return s;
    qv_model_config c;
    memset(&c, 0, sizeof c);
    s = qv_model_inspect(g, what, &c, NULL, 0, err);
    qv_gguf_free(g);
    if (s)
        return qv_err_prefix(err, s, "base model");
    snprintf(arch, arch_n, "%s", qv_arch_file_name((qv_arch)c.arch));
    b->arch = arch;
    b->n_layers = c.n_layers;
    for (int m = 0; m < QV_PEFT_MODULES; m++)
        qv_model_lin_shape(&c, (qv_lin_id)m, &b->N[m], &b->K[m]);
    return QV_OK;
}

static void summary(const qv_lora *l, const char *in, const char *format,
                    const char *out, int json)
{
    char t[64];
    qv_peft_format_targets(l->targets, t, sizeof t);
    size_t nt = qv_lora_tensor_count(l);
    if (json) {
        json_t *o = json_object(), *files = json_array(), *tm = json_array();
        if (!strcmp(format, "peft")) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", out, QV_PEFT_CONFIG);
            json_array_append_new(files, json_string(p));
            snprintf(p, sizeof p, "%s/%s", out, QV_PEFT_WEIGHTS);
            json_array_append_new(files, json_string(p));
        } else {
            json_array_append_new(files, json_string(out));
        }
        for (int m = 0; m < QV_PEFT_MODULES; m++)
            if (l->targets & (1u << m))
                json_array_append_new(tm, json_string(qv_peft_module_target(m)));
        json_object_set_new(o, "input", json_string(in));
        json_object_set_new(o, "format", json_string(format));
        json_object_set_new(o, "files", files);
        json_object_set_new(o, "architecture", json_string(l->arch));
        json_object_set_new(o, "base_model", l->base_model[0]
                                                 ? json_string(l->base_model)
                                                 : json_null());
        json_object_set_new(o, "rank", json_integer(l->rank));
        json_object_set_new(o, "alpha", json_real(l->alpha));
        json_object_set_new(o, "targets", json_string(t));
        json_object_set_new(o, "target_modules", tm);
        json_object_set_new(o, "layers", json_integer(l->n_layers));
        json_object_set_new(o, "tensors", json_integer((json_int_t)nt));
        qv_cli_print_json(o);
        return;
    }
    if (!strcmp(format, "peft"))
        printf("wrote %s/%s and %s/%s\n", out, QV_PEFT_CONFIG, out,
               QV_PEFT_WEIGHTS);
    else
        printf("wrote %s\n", out);
    printf("  %s adapter, rank %d, alpha %g, targets %s, %d layers, %zu "
           "tensors\n", l->arch, l->rank, (double)l->alpha, t, l->n_layers,
           nt);
}

int qv_cmd_export(int argc, char **argv)
{
    enum { O_FORMAT = QV_CLI_ID, O_FORCE, O_JSON };
    static const struct option opts[] = {
        {"format", required_argument, NULL, O_FORMAT},
        {"out", required_argument, NULL, 'o'},
        {"model", required_argument, NULL, 'm'},
        {"force", no_argument, NULL, O_FORCE},
        {"json", no_argument, NULL, O_JSON},
        {NULL, 0, NULL, 0},
    };
    const char *format = NULL, *out = NULL, *model = NULL, *ins[2] = {NULL, NULL};
    int force = 0, json = 0, c;
    qv_cli_args p;
    qv_cli_args_init(&p, "export", argc, argv, opts, ins, 2);
    while ((c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case O_FORMAT: format = optarg; break;
        case 'o': out = optarg; break;
        case 'm': model = optarg; break;
        case O_FORCE: force = 1; break;
        case O_JSON: json = 1; break;
        default: return QV_EXIT_USAGE;
        }
    }
    if (p.npos == 0)
        return qv_cli_usage("export", "give an adapter: ADAPTER.gguf or a "
                            "PEFT folder");
    if (p.npos > 1)
        return qv_cli_usage("export", "one adapter at a time ('%s' is extra)", ins[1]);
    const char *in = ins[0];
    struct stat st;
    if (stat(in, &st) != 0) {
        qv_err e;
        qv_fail(&e, QV_ERR_NOT_FOUND, "cannot open '%s': %s", in,
                strerror(errno));
        return qv_cli_error(&e);
    }
    int in_dir = S_ISDIR(st.st_mode);
    if (!format)
        format = in_dir ? "gguf" : "peft";
    if (strcmp(format, "peft") && strcmp(format, "gguf"))
        return qv_cli_usage("export", "--format is peft or gguf, not '%s'",
                            format);
    int to_peft = !strcmp(format, "peft");
    if (to_peft && in_dir)
        return qv_cli_usage("export", "'%s' is a folder: --format peft reads a "
                            "qvac adapter .gguf (a folder is read with "
                            "--format gguf)", in);
    if (!to_peft && !in_dir)
        return qv_cli_usage("export", "'%s' is a file: --format gguf reads a "
                            "PEFT folder (a .gguf is read with --format peft)",
                            in);
    if (!out)
        return qv_cli_usage("export", "give the output with -o %s",
                            to_peft ? "DIR" : "ADAPTER.gguf");
    if (model && to_peft)
        return qv_cli_usage("export", "--model is for --format gguf (a GGUF "
                            "adapter names its architecture already)");

    qv_err err = {0};
    qv_lora *l = NULL;
    qv_status s;
    if (to_peft) {
        qv_gguf *g = NULL;
        s = qv_gguf_open(in, &g, &err);
        if (!s)
            s = qv_lora_from_gguf(g, in, &l, &err);
        qv_gguf_free(g);
        if (!s)
            s = qv_lora_write_peft(l, out, force, &err);
    } else {
        char arch[64];
        qv_peft_base base;
        s = load_base(model, arch, sizeof arch, &base, &err);
        if (!s)
            s = qv_lora_read_peft(in, &base, &l, &err);
        if (!s && !force && stat(out, &st) == 0)
            s = qv_fail(&err, QV_ERR_INVALID, "'%s' exists; pass --force to "
                        "replace it", out);
        if (!s)
            s = qv_lora_write_gguf(l, out, &err);
    }
    if (s) {
        qv_lora_free(&l);
        return qv_cli_error(&err);
    }
    summary(l, in, format, out, json);
    qv_lora_free(&l);
    return QV_EXIT_OK;
}
