/* cli/cmd_inspect.c — qvac inspect FILE.gguf [--json]: what a model file
 * is (architecture, shape, parameters, tensor types, tokenizer, chat
 * template) and whether qvac can fine-tune it, and if not, why. Nothing is
 * decoded: the file is mapped and checked as qv_model_load would check it
 * (qv_model_inspect), so a 2B-parameter file answers at once. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/chat.h"
#include "formats/gguf.h"
#include "train/model.h"

void qv_help_inspect(FILE *out)
{
    fprintf(out,
        "usage: qvac inspect FILE.gguf [--json]\n\n"
        "What a GGUF model file holds: its architecture and shape, parameter counts,\n"
        "the type of each tensor (counted by type), its tokenizer (tokenizer.ggml.model\n"
        "and vocabulary size), its chat template (as --chat-template names it), and\n"
        "whether qvac can fine-tune it; if not, the reason, naming the key or tensor.\n"
        "Nothing is decoded, so large files answer at once. Exit status 0 when qvac\n"
        "can fine-tune the file, 1 when it cannot, 2 on a usage error.\n");
}


int qv_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    static const struct option lo[] = {{"json", no_argument, NULL, QV_CLI_ID},
                                       {NULL, 0, NULL, 0}};
    qv_cli_args ap;
    qv_cli_args_init(&ap, "inspect", argc, argv, lo, &path, 1);
    for (int c; (c = qv_cli_next(&ap)) != -1;) {
        if (c == QV_CLI_BAD)
            return QV_EXIT_USAGE;
        json = 1;
    }
    if (!path)
        return qv_cli_usage("inspect", "give a GGUF file");
    qv_err err = {0};
    qv_gguf *g = NULL;
    if (qv_gguf_open(path, &g, &err))
        return qv_cli_error(&err);

    const char *arch = NULL, *name = NULL, *tmodel = NULL, *tmpl = NULL;
    qv_gguf_get_str(g, "general.architecture", &arch, NULL, NULL);
    qv_gguf_get_str(g, "general.name", &name, NULL, NULL);
    qv_gguf_get_str(g, "tokenizer.ggml.model", &tmodel, NULL, NULL);
    qv_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL, NULL);
    const qv_gguf_kv *tok = qv_gguf_find_kv(g, "tokenizer.ggml.tokens");
    const char *qtok = NULL;
    qv_gguf_get_str(g, "qvac.tokenizer", &qtok, NULL, NULL);
    long long n_vocab = tok && tok->type == QV_GGUF_ARRAY ? (long long)tok->n
                        : qtok ? 258 : -1;
    const char *tok_name = tmodel ? tmodel : qtok ? "qvac bytes" : NULL;

    /* chat template */
    const char *chat = NULL;
    char chat_why[256] = "";
    if (tmpl) {
        qv_chat_template ct;
        qv_err ce = {0};
        if (!qv_chat_detect(tmpl, &ct, &ce))
            chat = qv_chat_name(ct);
        else
            qv_printable(chat_why, sizeof chat_why, ce.msg);
    }

    /* tensors by type */
    uint64_t count[64] = {0}, elems[64] = {0}, bytes = 0, total = 0;
    for (size_t i = 0; i < qv_gguf_tensor_count(g); i++) {
        const qv_gguf_tensor *t = qv_gguf_tensor_at(g, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->ne[d];
        if (t->type < 64) {
            count[t->type]++;
            elems[t->type] += n;
        }
        bytes += t->nbytes;
        total += n;
    }

    /* can qvac fine-tune it? */
    qv_model_config c;
    memset(&c, 0, sizeof c);
    char notes[1024] = "";
    qv_err me = {0};
    qv_status ms = qv_model_inspect(g, path, &c, notes, sizeof notes, &me);
    const char *why = NULL;
    char whyb[600];
    if (!ms && n_vocab < 0) {
        snprintf(whyb, sizeof whyb, "%s has no tokenizer (no tokenizer.ggml.* "
                 "keys): qvac cannot turn text into its tokens", path);
        why = whyb;
    } else if (ms) {
        qv_printable(whyb, sizeof whyb, me.msg);
        why = whyb;
    }
    uint64_t nt = 0, no = 0;
    if (!ms)
        qv_model_count(&c, &nt, &no);

    char sarch[96], sname[96], stok[64];
    qv_printable(sarch, sizeof sarch, arch ? arch : "");
    qv_printable(sname, sizeof sname, name ? name : "");
    qv_printable(stok, sizeof stok, tok_name ? tok_name : "");
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "architecture", arch ? json_string(arch) : json_null());
        json_object_set_new(o, "name", name ? json_string(name) : json_null());
        json_object_set_new(o, "tensors", json_integer((json_int_t)qv_gguf_tensor_count(g)));
        json_object_set_new(o, "elements", json_integer((json_int_t)total));
        json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)bytes));
        json_t *types = json_object();
        for (int t = 0; t < 64; t++)
            if (count[t]) {
                const char *tn = qv_ggml_type_name((uint32_t)t);
                json_t *e = json_object();
                json_object_set_new(e, "tensors", json_integer((json_int_t)count[t]));
                json_object_set_new(e, "elements", json_integer((json_int_t)elems[t]));
                json_object_set_new(types, tn ? tn : "?", e);
            }
        json_object_set_new(o, "tensor_types", types);
        json_t *tk = json_object();
        json_object_set_new(tk, "model", tok_name ? json_string(tok_name) : json_null());
        json_object_set_new(tk, "vocab_size", n_vocab >= 0 ? json_integer(n_vocab) : json_null());
        json_object_set_new(o, "tokenizer", tk);
        json_t *ch = json_object();
        json_object_set_new(ch, "present", json_boolean(tmpl != NULL));
        json_object_set_new(ch, "template", chat ? json_string(chat) : json_null());
        if (chat_why[0])
            json_object_set_new(ch, "error", json_string(chat_why));
        json_object_set_new(o, "chat_template", ch);
        if (!ms) {
            json_t *m = json_object();
            json_object_set_new(m, "semantics", json_string(qv_arch_name((qv_arch)c.arch)));
            json_object_set_new(m, "vocab", json_integer(c.vocab));
            json_object_set_new(m, "dim", json_integer(c.dim));
            json_object_set_new(m, "layers", json_integer(c.n_layers));
            json_object_set_new(m, "heads", json_integer(c.n_heads));
            json_object_set_new(m, "kv_heads", json_integer(c.n_kv_heads));
            json_object_set_new(m, "ffn", json_integer(c.ffn_dim));
            json_object_set_new(m, "context", json_integer(c.ctx));
            json_object_set_new(m, "activation", json_string(c.act == QV_ACT_RELU2 ? "relu2" : "silu"));
            json_object_set_new(m, "rope", json_string(c.rope_neox ? "neox" : "norm"));
            json_object_set_new(m, "rope_freq_base", json_real(c.rope_theta));
            json_object_set_new(m, "sub_norm", json_boolean(c.sub_norm));
            json_object_set_new(m, "tied_head", json_boolean(c.tied));
            json_object_set_new(m, "ternary_parameters", json_integer((json_int_t)nt));
            json_object_set_new(m, "other_parameters", json_integer((json_int_t)no));
            json_object_set_new(o, "model", m);
        }
        json_object_set_new(o, "finetunable", json_boolean(why == NULL));
        if (why)
            json_object_set_new(o, "reason", json_string(why));
        if (notes[0])
            json_object_set_new(o, "notes", json_string(notes));
        qv_cli_print_json(o);
    } else {
        printf("file           %s\n", path);
        printf("architecture   %s%s%s%s\n", arch ? sarch : "(none)",
               name ? " (" : "", name ? sname : "", name ? ")" : "");
        if (!ms) {
            printf("shape          dim %d, %d layers, %d heads (%d kv), ffn %d, "
                   "context %d, vocabulary %d\n", c.dim, c.n_layers, c.n_heads,
                   c.n_kv_heads, c.ffn_dim, c.ctx, c.vocab);
            printf("semantics      %s: %s FFN, %s RoPE (base %g), %s, %s head\n",
                   qv_arch_name((qv_arch)c.arch),
                   c.act == QV_ACT_RELU2 ? "squared-ReLU" : "SiLU-gated",
                   c.rope_neox ? "NEOX" : "adjacent-pair", (double)c.rope_theta,
                   c.sub_norm ? "sub-norms" : "no sub-norms",
                   c.tied ? "tied" : "untied");
            printf("parameters     %.3f B (%.3f B ternary, %.3f B other)\n",
                   (double)(nt + no) / 1e9, (double)nt / 1e9, (double)no / 1e9);
        }
        char b[32];
        qv_fmt_bytes(bytes, b, sizeof b);
        printf("tensors        %zu, %s:", qv_gguf_tensor_count(g), b);
        for (int t = 0; t < 64; t++)
            if (count[t]) {
                const char *tn = qv_ggml_type_name((uint32_t)t);
                printf(" %llu %s", (unsigned long long)count[t], tn ? tn : "?");
            }
        printf("\n");
        if (tok_name)
            printf("tokenizer      %s, %lld tokens\n", stok, n_vocab);
        else
            printf("tokenizer      (none)\n");
        if (!tmpl)
            printf("chat template  (none)\n");
        else if (chat)
            printf("chat template  %s\n", chat);
        else
            printf("chat template  not one qvac knows (%s)\n", chat_why);
        if (why)
            printf("fine-tune      no: %s\n", why);
        else
            printf("fine-tune      yes\n");
        for (const char *p = notes; *p;) {
            const char *e = strchr(p, '\n');
            int n = e ? (int)(e - p) : (int)strlen(p);
            char line[1100];
            snprintf(line, sizeof line, "%.*s", n, p);
            char sl[1100];
            qv_printable(sl, sizeof sl, line);
            printf("note           %s\n", sl);
            p += n + (e ? 1 : 0);
        }
    }
    qv_gguf_free(g);
    return why ? QV_EXIT_FAIL : QV_EXIT_OK;
}
