/* tests/test_eval.c — `qvac eval` (cli/cmd_train.c) as a user runs it, on a
 * model whose loss can be worked out by hand: every BitLinear weight is
 * zero, so each block adds nothing and the logits at a position depend only
 * on that position's token (head . rmsnorm(embedding)). The test computes
 * the loss itself in double precision, with its own reading of the rules:
 * llama-perplexity's windows for text (BOS + tokens, chunks of S starting
 * with BOS, positions S/2 .. S-2 scored), and finetune's masking for a
 * prompt/completion dataset (the completion's bytes and EOS are scored). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/tokenizer.h"
#include "kernels/ternary.h"
#include "train/model.h"

extern char **environ;

static char dir[] = "/tmp/qvac-test-eval-XXXXXX";
static char bin[512];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    const char *b = getenv("QVAC_BIN");
    snprintf(bin, sizeof bin, "%s", b ? b : "build/qvac");
    cr_assert_eq(access(bin, X_OK), 0, "no qvac binary at %s (set QVAC_BIN)", bin);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* A 1-layer model with every BitLinear weight zero. */
static qv_model *zero_model(const char *path)
{
    qv_model_config c = {.vocab = QV_TOK_VOCAB, .dim = 64, .n_layers = 1,
                         .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 128,
                         .ctx = 32, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                         .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1,
                         .rope_neox = 1};
    qv_model *m = NULL;
    qv_err e = {0};
    cr_assert_eq(qv_model_init_random(&c, 3, &m, &e), QV_OK, "%s", e.msg);
    for (int i = 0; i < QV_LIN_COUNT; i++) {
        qv_linear *l = &m->layers[0].lin[i];
        int8_t *z = calloc((size_t)l->N * (size_t)l->K, 1);
        cr_assert_not_null(z);
        cr_assert_eq(qv_ternary_pack(z, l->N, l->K, l->packed, &e), QV_OK);
        free(z);
    }
    for (int d = 0; d < c.dim; d++)
        m->out_norm[d] = 0.5f + (float)d / (float)c.dim;
    qv_model_drop_shadow(m);
    cr_assert_eq(qv_model_save(m, path, &e), QV_OK, "%s", e.msg);
    return m;
}

/* -log softmax(head . rmsnorm(emb[tok]) * g)[target], in double. */
static double nll(const qv_model *m, int tok, int target)
{
    int D = m->cfg.dim, V = m->cfg.vocab;
    const float *x = m->tok_emb + (size_t)tok * D;
    double ss = 0;
    for (int d = 0; d < D; d++)
        ss += (double)x[d] * x[d];
    double r = 1.0 / sqrt(ss / D + m->cfg.norm_eps);
    double mx = -INFINITY, *lg = malloc(sizeof *lg * (size_t)V);
    for (int v = 0; v < V; v++) {
        const float *h = m->tok_emb + (size_t)v * D;
        double a = 0;
        for (int d = 0; d < D; d++)
            a += (double)h[d] * ((double)x[d] * r * m->out_norm[d]);
        lg[v] = a;
        mx = fmax(mx, a);
    }
    double se = 0;
    for (int v = 0; v < V; v++)
        se += exp(lg[v] - mx);
    double out = -(lg[target] - mx - log(se));
    free(lg);
    return out;
}

/* Runs qvac with args; returns the loss and token count of its --json. */
static void run_eval(char *const args[], double *loss, long long *tokens)
{
    char out[600];
    snprintf(out, sizeof out, "%s/eval.json", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, args, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qvac eval failed");
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "eval --json printed no JSON: %s", je.text);
    *loss = json_real_value(json_object_get(j, "loss"));
    *tokens = (long long)json_integer_value(json_object_get(j, "tokens"));
    json_decref(j);
}

TestSuite(eval, .init = setup, .fini = teardown);

Test(eval, text_windows_as_llama_perplexity)
{
    char model[600], text[600];
    snprintf(model, sizeof model, "%s/zero.gguf", dir);
    snprintf(text, sizeof text, "%s/t.txt", dir);
    qv_model *m = zero_model(model);
    const char *s = "Once upon a time a fox met a cat. They were friends! The end, "
                    "and then the dog came along too.";
    FILE *f = fopen(text, "w");
    fputs(s, f);
    fclose(f);
    /* BOS + bytes, chunks of 16 whose first token is BOS; 15..2 scored */
    int n = (int)strlen(s) + 1, S = 16, chunks = n / S;
    int *ids = malloc(sizeof *ids * (size_t)n);
    ids[0] = QV_TOK_BOS;
    for (int i = 1; i < n; i++)
        ids[i] = (unsigned char)s[i - 1];
    double sum = 0;
    long long cnt = 0;
    for (int c = 0; c < chunks; c++)
        for (int k = S / 2; k <= S - 2; k++, cnt++)
            sum += nll(m, ids[c * S + k], ids[c * S + k + 1]);
    free(ids);
    double loss;
    long long tokens;
    char *args[] = {bin, "eval", "--model", model, "--text", text, "--seq-len", "16",
                    "--batch", "3", "--device", "ref", "--json", NULL};
    run_eval(args, &loss, &tokens);
    cr_expect_eq(tokens, cnt, "scored %lld tokens, by hand %lld", tokens, cnt);
    cr_expect(fabs(loss - sum / cnt) <= 1e-5 * fabs(sum / cnt),
              "eval says %.8f, by hand %.8f", loss, sum / cnt);
    qv_model_free(&m);
}

Test(eval, dataset_scores_completion_and_eos)
{
    char model[600], data[600];
    snprintf(model, sizeof model, "%s/zero.gguf", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    qv_model *m = zero_model(model);
    const char *ex[2][2] = {{"Hi?\n", "Arr!"}, {"Who?\n", "Me, matey."}};
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 2; i++)
        fprintf(f, "{\"prompt\": \"%.*s\\n\", \"completion\": \"%s\"}\n",
                (int)strlen(ex[i][0]) - 1, ex[i][0], ex[i][1]);
    fclose(f);
    double sum = 0;
    long long cnt = 0;
    for (int i = 0; i < 2; i++) {
        /* BOS prompt completion EOS; the completion's bytes and EOS scored */
        int seq[64], n = 0;
        seq[n++] = QV_TOK_BOS;
        for (const char *p = ex[i][0]; *p; p++)
            seq[n++] = (unsigned char)*p;
        int first = n;
        for (const char *p = ex[i][1]; *p; p++)
            seq[n++] = (unsigned char)*p;
        seq[n++] = QV_TOK_EOS;
        for (int t = first; t < n; t++, cnt++)
            sum += nll(m, seq[t - 1], seq[t]);
    }
    double loss;
    long long tokens;
    char *args[] = {bin, "eval", "--model", model, "--data", data, "--seq-len", "32",
                    "--device", "ref", "--json", NULL};
    run_eval(args, &loss, &tokens);
    cr_expect_eq(tokens, cnt, "scored %lld tokens, by hand %lld", tokens, cnt);
    cr_expect(fabs(loss - sum / cnt) <= 1e-5 * fabs(sum / cnt),
              "eval says %.8f, by hand %.8f", loss, sum / cnt);
    qv_model_free(&m);
}
