/* cli/cmd_train.c — `qvac finetune`, `qvac compare`, `qvac generate` and
 * `qvac pretrain`: argument parsing, device choice, progress bars and the
 * summary tables. The work is done by train/. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autotune/cache.h"
#include "cli/cli.h"
#include "common/embedded.h"
#include "common/file.h"
#include "formats/chat.h"
#include "formats/dataset.h"
#include "formats/gguf.h"
#include "formats/tokenizer.h"
#include "formats/vocab.h"
#include "common/progress.h"
#include "kernels/verify.h"
#include "train/mfu.h"
#include "train/train.h"

#define BUILTIN_MODEL "model/qvac-tiny.gguf"
#define BUILTIN_DATA "data/pirate.jsonl"
#define BUILTIN_CORPUS "data/stories.txt"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

/* ---- options shared by finetune, compare and pretrain ------------------- */

typedef struct targs {
    const char *cmd;
    const char *model, *data, *device, *out, *resume, *db;
    const char *chat_template; /* --chat-template NAME */
    int long_policy, long_set; /* --long skip|truncate */
    long max_line;             /* --max-line BYTES of a dataset line */
    qv_train_opts o;
    double val_fraction;
    int json, steps_set;
    int tune;          /* tune at the model's shapes first: 1 (--tune),
                          0 (--no-tune), -1 (finetune / compare's default:
                          when the cache can be written and ref is there) */
    long tune_evals;   /* --tune-evals N (per kernel and shape) */
    /* pretrain */
    qv_model_config mc;
    /* generate */
    const char *adapter, *prompt;
    const char *stop_at;       /* generate --stop STR */
    int tokens;
    float temperature;
    qv_act_quant act_quant; /* --act-quant (eval, generate) */
    /* eval */
    const char *text, *dump, *split;
    long max_batches;
} targs;

/* The options of the five commands: one getopt_long table each, taken
 * from this list by the command's bit. Short forms are llama.cpp's letters
 * where it has them: -m model, -d data, -o out, -p prompt, -n tokens,
 * -s seed. */
enum { C_FT = 1, C_CMP = 2, C_GEN = 4, C_EVAL = 8, C_PRE = 16 };
enum {
    O_DEVICE = QV_CLI_ID, O_RESUME, O_DB, O_ADAPTER, O_STOP, O_TEXT, O_DUMP, O_SPLIT,
    O_MAX_BATCHES, O_ACT_QUANT, O_CHAT, O_LONG, O_WEIGHTS, O_TARGETS, O_RANK, O_ALPHA,
    O_LR, O_STEPS, O_WARMUP, O_BATCH, O_SEQ, O_ACCUM, O_CLIP, O_WD, O_VAL, O_CKPT,
    O_MAX_LINE, O_EVAL_BATCHES, O_TUNE, O_NO_TUNE, O_TUNE_EVALS, O_CKPT_ACT, O_TEMP,
    O_DIM, O_LAYERS, O_HEADS, O_KV_HEADS, O_FFN, O_CTX, O_ACT, O_ROPE, O_HEAD, O_JSON,
};
#define C_TRAIN (C_FT | C_CMP)         /* finetune and compare */
#define C_STEPS (C_FT | C_CMP | C_PRE) /* every command that trains */
#define C_DATA (C_FT | C_CMP | C_EVAL) /* reads a dataset as finetune does */
static const struct {
    struct option o;
    unsigned cmds;
} train_opts[] = {
    {{"model", required_argument, NULL, 'm'}, C_TRAIN | C_GEN | C_EVAL},
    {{"data", required_argument, NULL, 'd'}, C_DATA | C_PRE},
    {{"device", required_argument, NULL, O_DEVICE}, C_STEPS | C_GEN | C_EVAL},
    {{"out", required_argument, NULL, 'o'}, C_FT | C_PRE},
    {{"resume", required_argument, NULL, O_RESUME}, C_FT | C_PRE},
    {{"db", required_argument, NULL, O_DB}, C_STEPS | C_EVAL},
    {{"adapter", required_argument, NULL, O_ADAPTER}, C_GEN | C_EVAL},
    {{"prompt", required_argument, NULL, 'p'}, C_GEN},
    {{"stop", required_argument, NULL, O_STOP}, C_GEN},
    {{"tokens", required_argument, NULL, 'n'}, C_GEN},
    {{"temperature", required_argument, NULL, O_TEMP}, C_GEN},
    {{"text", required_argument, NULL, O_TEXT}, C_EVAL},
    {{"dump", required_argument, NULL, O_DUMP}, C_EVAL},
    {{"split", required_argument, NULL, O_SPLIT}, C_EVAL},
    {{"max-batches", required_argument, NULL, O_MAX_BATCHES}, C_EVAL},
    {{"act-quant", required_argument, NULL, O_ACT_QUANT}, C_GEN | C_EVAL},
    {{"chat-template", required_argument, NULL, O_CHAT}, C_DATA},
    {{"long", required_argument, NULL, O_LONG}, C_DATA},
    {{"max-line", required_argument, NULL, O_MAX_LINE}, C_DATA},
    {{"weights", required_argument, NULL, O_WEIGHTS}, C_FT | C_GEN | C_EVAL},
    {{"targets", required_argument, NULL, O_TARGETS}, C_TRAIN},
    {{"rank", required_argument, NULL, O_RANK}, C_TRAIN},
    {{"alpha", required_argument, NULL, O_ALPHA}, C_TRAIN},
    {{"lr", required_argument, NULL, O_LR}, C_STEPS},
    {{"steps", required_argument, NULL, O_STEPS}, C_STEPS},
    {{"warmup", required_argument, NULL, O_WARMUP}, C_STEPS},
    {{"batch", required_argument, NULL, O_BATCH}, C_STEPS | C_EVAL},
    {{"seq-len", required_argument, NULL, O_SEQ}, C_STEPS | C_EVAL},
    {{"accum", required_argument, NULL, O_ACCUM}, C_STEPS},
    {{"clip", required_argument, NULL, O_CLIP}, C_STEPS},
    {{"weight-decay", required_argument, NULL, O_WD}, C_STEPS},
    {{"seed", required_argument, NULL, 's'}, C_STEPS | C_GEN | C_EVAL},
    {{"val-fraction", required_argument, NULL, O_VAL}, C_DATA},
    {{"ckpt-every", required_argument, NULL, O_CKPT}, C_FT | C_PRE},
    {{"eval-batches", required_argument, NULL, O_EVAL_BATCHES}, C_STEPS},
    {{"tune", no_argument, NULL, O_TUNE}, C_TRAIN},
    {{"no-tune", no_argument, NULL, O_NO_TUNE}, C_TRAIN},
    {{"tune-evals", required_argument, NULL, O_TUNE_EVALS}, C_TRAIN},
    {{"checkpoint-activations", no_argument, NULL, O_CKPT_ACT}, C_STEPS},
    {{"dim", required_argument, NULL, O_DIM}, C_PRE},
    {{"layers", required_argument, NULL, O_LAYERS}, C_PRE},
    {{"heads", required_argument, NULL, O_HEADS}, C_PRE},
    {{"kv-heads", required_argument, NULL, O_KV_HEADS}, C_PRE},
    {{"ffn", required_argument, NULL, O_FFN}, C_PRE},
    {{"ctx", required_argument, NULL, O_CTX}, C_PRE},
    {{"act", required_argument, NULL, O_ACT}, C_PRE},
    {{"rope", required_argument, NULL, O_ROPE}, C_PRE},
    {{"head", required_argument, NULL, O_HEAD}, C_PRE},
    {{"json", no_argument, NULL, O_JSON}, C_STEPS | C_GEN | C_EVAL},
};
#define N_TRAIN_OPTS (sizeof train_opts / sizeof train_opts[0])

static int parse_args(int argc, char **argv, targs *a, unsigned cmd)
{
    struct option lo[N_TRAIN_OPTS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_TRAIN_OPTS; i++)
        if (train_opts[i].cmds & cmd)
            lo[n++] = train_opts[i].o;
    lo[n] = (struct option){NULL, 0, NULL, 0};
    static const char *const split[] = {"all", "val", "train", NULL},
                             *const lng[] = {"skip", "truncate", NULL},
                             *const weights[] = {"ternary", "f16", NULL},
                             *const act[] = {"silu", "relu2", NULL},
                             *const rope[] = {"norm", "neox", NULL},
                             *const head[] = {"untied", "tied", NULL};
    qv_cli_args p;
    qv_cli_args_init(&p, a->cmd, argc, argv, lo, NULL, 0);
    int c, rc = 0, k = 0;
    long v = 0;
    double d = 0;
    unsigned long long u = 0;
    qv_err e;
    while (!rc && (c = qv_cli_next(&p)) != -1) {
        switch (c) {
        case QV_CLI_BAD: return QV_EXIT_USAGE;
        case 'm': a->model = optarg; break;
        case 'd': a->data = optarg; break;
        case O_DEVICE: a->device = optarg; break;
        case 'o': a->out = optarg; break;
        case O_RESUME: a->resume = optarg; break;
        case O_DB: a->db = optarg; break;
        case O_ADAPTER: a->adapter = optarg; break;
        case 'p': a->prompt = optarg; break;
        case O_STOP:
            if (!*optarg)
                return qv_cli_bad_value(&p, "needs a non-empty string");
            a->stop_at = optarg;
            break;
        case O_TEXT: a->text = optarg; break;
        case O_DUMP: a->dump = optarg; break;
        case O_SPLIT:
            if (!(rc = qv_cli_choice(&p, split, &k)))
                a->split = split[k];
            break;
        case O_MAX_BATCHES:
            if (!(rc = qv_cli_long(&p, 1, 100000000, &v)))
                a->max_batches = v;
            break;
        case O_ACT_QUANT:
            if (qv_act_quant_parse(optarg, &a->act_quant, &e))
                return qv_cli_bad_value(&p, "%s", e.msg);
            break;
        case O_CHAT: {
            qv_chat_template t;
            if (qv_chat_by_name(optarg, &t, &e))
                return qv_cli_bad_value(&p, "%s", e.msg);
            a->chat_template = optarg;
            break;
        }
        case O_LONG:
            if (!(rc = qv_cli_choice(&p, lng, &k))) {
                a->long_policy = k ? QV_LONG_TRUNCATE : QV_LONG_SKIP;
                a->long_set = 1;
            }
            break;
        case O_WEIGHTS:
            if (!(rc = qv_cli_choice(&p, weights, &k)))
                a->o.weights = k ? QV_WEIGHTS_F16 : QV_WEIGHTS_TERNARY;
            break;
        case O_TARGETS:
            if (qv_lin_parse_targets(optarg, &a->o.targets, &e))
                return qv_cli_bad_value(&p, "%s", e.msg);
            break;
        case O_RANK: rc = qv_cli_int(&p, 1, 128, &a->o.rank); break;
        case O_ALPHA:
            if (!(rc = qv_cli_double(&p, 1e-6, 1e6, &d)))
                a->o.alpha = (float)d;
            break;
        case O_LR:
            if (!(rc = qv_cli_double(&p, 1e-9, 10, &d)))
                a->o.lr = (float)d;
            break;
        case O_STEPS:
            if (!(rc = qv_cli_long(&p, 1, 100000000, &v))) {
                a->o.steps = v;
                a->steps_set = 1;
            }
            break;
        case O_WARMUP:
            if (!(rc = qv_cli_long(&p, 0, 100000000, &v)))
                a->o.warmup = v;
            break;
        case O_BATCH: rc = qv_cli_int(&p, 1, 4096, &a->o.batch); break;
        case O_SEQ: rc = qv_cli_int(&p, 2, 65536, &a->o.seq); break;
        case O_ACCUM: rc = qv_cli_int(&p, 1, 4096, &a->o.accum); break;
        case O_CLIP:
            if (!(rc = qv_cli_double(&p, 0, 1e6, &d)))
                a->o.clip = (float)d;
            break;
        case O_WD:
            if (!(rc = qv_cli_double(&p, 0, 10, &d)))
                a->o.weight_decay = (float)d;
            break;
        case O_VAL: rc = qv_cli_double(&p, 0, 0.9, &a->val_fraction); break;
        case O_CKPT:
            if (!(rc = qv_cli_long(&p, 0, 100000000, &v)))
                a->o.ckpt_every = v;
            break;
        case O_MAX_LINE: rc = qv_cli_long(&p, 2, 1L << 30, &a->max_line); break;
        case O_EVAL_BATCHES: rc = qv_cli_int(&p, 1, 100000, &a->o.eval_batches); break;
        case 's':
            if (!(rc = qv_cli_u64(&p, &u)))
                a->o.seed = u;
            break;
        case O_TUNE: a->tune = 1; break;
        case O_NO_TUNE: a->tune = 0; break;
        case O_TUNE_EVALS:
            if (!(rc = qv_cli_long(&p, 1, 100000, &a->tune_evals)))
                a->tune = 1;
            break;
        case O_CKPT_ACT: a->o.checkpoint = 1; break;
        case 'n': rc = qv_cli_int(&p, 1, 100000, &a->tokens); break;
        case O_TEMP:
            if (!(rc = qv_cli_double(&p, 0, 10, &d)))
                a->temperature = (float)d;
            break;
        case O_DIM: rc = qv_cli_int(&p, 2, 65536, &a->mc.dim); break;
        case O_LAYERS: rc = qv_cli_int(&p, 1, 1024, &a->mc.n_layers); break;
        case O_HEADS: rc = qv_cli_int(&p, 1, 1024, &a->mc.n_heads); break;
        case O_KV_HEADS: rc = qv_cli_int(&p, 1, 1024, &a->mc.n_kv_heads); break;
        case O_FFN: rc = qv_cli_int(&p, 1, 262144, &a->mc.ffn_dim); break;
        case O_CTX: rc = qv_cli_int(&p, 2, 65536, &a->mc.ctx); break;
        case O_ACT:
            if (!(rc = qv_cli_choice(&p, act, &k)))
                a->mc.act = k ? QV_ACT_RELU2 : QV_ACT_SILU;
            break;
        case O_ROPE:
            if (!(rc = qv_cli_choice(&p, rope, &k)))
                a->mc.rope_neox = k;
            break;
        case O_HEAD:
            if (!(rc = qv_cli_choice(&p, head, &k)))
                a->mc.tied = k;
            break;
        case O_JSON: a->json = 1; break;
        }
    }
    return rc;
}

/* ---- what a run starts from ------------------------------------------------ */

/* What the load did that the user should know (weights quantised at load,
 * a legacy file's semantics), to stderr. */
static qv_status print_notes(qv_status s, qv_model *const *mp)
{
    if (s || !*mp || !(*mp)->notes[0])
        return s;
    const char *p = (*mp)->notes;
    while (*p) {
        const char *e = strchr(p, '\n');
        int n = e ? (int)(e - p) : (int)strlen(p);
        fprintf(stderr, "qvac: note: %.*s\n", n, p);
        p += n + (e ? 1 : 0);
    }
    return s;
}

static qv_status load_model(const char *path, qv_model **m, qv_err *err)
{
    if (path)
        return print_notes(qv_model_load(path, m, err), m);
    const qv_embedded_file *f = qv_embedded_find(BUILTIN_MODEL);
    if (!f)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "this build has no built-in model (data/model/qvac-tiny.gguf "
                       "was missing when it was built); pass --model FILE or run "
                       "`qvac pretrain` and rebuild");
    return print_notes(qv_model_load_mem(f->data, f->size, "built-in model", m, err),
                       m);
}

/* The tokenizer and chat template of the model (a->model, or the built-in
 * byte model) as dataset options; *vocab is freed by the caller. */
static qv_status data_opts(const targs *a, const qv_model *m, qv_dataset_opts *o,
                           qv_vocab **vocab, qv_err *err)
{
    qv_gguf *g = NULL;
    qv_status s;
    if (a->model && (s = qv_gguf_open(a->model, &g, err)))
        return s;
    /* the built-in data set was made for the built-in model's context and
     * has always been cut to it: truncate unless --long says otherwise */
    int lp = a->long_set || a->data ? a->long_policy : QV_LONG_TRUNCATE;
    s = qv_dataset_opts_for_model(g, a->model, a->chat_template, (size_t)m->cfg.ctx,
                                  lp, o, vocab, err);
    if (s == QV_OK)
        o->max_line = (size_t)a->max_line;
    qv_gguf_free(g);
    return s;
}

static qv_status load_data(const targs *a, const qv_model *m, qv_dataset **ds,
                           qv_err *err)
{
    qv_dataset_opts o;
    qv_vocab *v = NULL;
    qv_status s = data_opts(a, m, &o, &v, err);
    if (s)
        return s;
    if (a->data) {
        s = qv_dataset_load_file_ex(a->data, &o, ds, err);
    } else {
        const qv_embedded_file *f = qv_embedded_find(BUILTIN_DATA);
        if (!f)
            s = qv_fail(err, QV_ERR_NOT_FOUND,
                        "this build has no built-in dataset; pass --data FILE");
        else
            s = qv_dataset_load_mem_ex((const char *)f->data, f->size,
                                       "built-in dataset", &o, ds, err);
    }
    qv_vocab_free(v);
    if (s)
        return s;
    if (qv_dataset_n_long(*ds))
        fprintf(stderr, "qvac: %s: %llu example(s) longer than the model's context of "
                "%d tokens %s\n", qv_dataset_name(*ds),
                (unsigned long long)qv_dataset_n_long(*ds), m->cfg.ctx,
                o.long_policy == QV_LONG_TRUNCATE ? "were cut to it"
                : "were skipped (--long truncate keeps their start)");
    size_t stored = 0;
    const qv_dataset_issue *is = qv_dataset_issues(*ds, &stored);
    for (size_t i = 0; i < stored; i++)
        fprintf(stderr, "qvac: %s:%llu: skipped: %s\n", qv_dataset_name(*ds),
                (unsigned long long)is[i].line, is[i].reason);
    uint64_t total = qv_dataset_n_issues(*ds);
    if (total > stored)
        fprintf(stderr, "qvac: %s: %llu more lines skipped\n",
                qv_dataset_name(*ds), (unsigned long long)(total - stored));
    return QV_OK;
}

static qv_tune_cache *open_cache(const char *db)
{
    char path[1024];
    if (!db) {
        if (qv_tune_cache_default_path(path, sizeof path, NULL))
            return NULL;
        db = path;
    }
    if (access(db, R_OK))
        return NULL;
    qv_tune_cache *c = NULL;
    if (qv_tune_cache_open(db, 1, 2000, &c, NULL))
        return NULL;
    return c;
}

/* ---- progress ---------------------------------------------------------------- */

typedef struct prog {
    int quiet;
    const char *label;
    qv_progress line; /* a line per step on a terminal; every 2 s in logs */
} prog;

static void fmt_time(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 1e7)
        s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static int on_progress(void *user, const qv_train_progress *p)
{
    prog *ps = user;
    if (ps->quiet)
        return 0;
    if (strcmp(p->phase, "train")) {
        qv_progress_line(&ps->line, 1, "%s: %s ...", ps->label, p->phase);
        return 0;
    }
    char eta[32], mem[32], bar[32];
    fmt_time(p->eta_s, eta, sizeof eta);
    qv_fmt_bytes(p->peak_bytes, mem, sizeof mem);
    qv_progress_bar(bar, sizeof bar, 20, (double)p->step, (double)p->steps);
    qv_progress_line(&ps->line, p->step == p->steps,
                     "%s [%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s  "
                     "peak %s", ps->label, bar, (long long)p->step, (long long)p->steps,
                     p->loss, (double)p->lr, p->tokens_per_s, eta, mem);
    if (p->step == p->steps)
        qv_progress_end(&ps->line);
    return 0;
}

/* ---- finetune ------------------------------------------------------------------- */

void qv_help_finetune(FILE *out)
{
    fprintf(out,
        "usage: qvac finetune [--model M.gguf] [--data D.jsonl] [--device ID]\n"
        "                     [--weights ternary|f16] [--rank R] [--alpha A] [--targets LIST]\n"
        "                     [--lr LR] [--steps N] [--warmup N] [--batch B] [--seq-len S]\n"
        "                     [--accum N] [--clip C] [--seed N] [--val-fraction F]\n"
        "                     [--ckpt-every N] [--out DIR] [--resume DIR] [--db PATH]\n"
        "                     [--chat-template NAME] [--long skip|truncate] [--max-line BYTES]\n"
        "                     [--tune | --no-tune] [--tune-evals N] [--checkpoint-activations]\n"
        "                     [--json]\n\n"
        "LoRA fine-tuning of a BitNet b1.58 model on one device. The ternary base is\n"
        "frozen; adapters on the target modules are trained with AdamW (warm-up, cosine\n"
        "decay, gradient clipping, accumulation). Data is JSON Lines, one object a line:\n"
        "{\"text\": ...}, {\"prompt\": ..., \"completion\": ...} (loss on the completion)\n"
        "or {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} rendered with the\n"
        "model's chat template (loss on the assistant turns), tokenized with the model's\n"
        "own tokenizer (tokenizer.ggml.*, exactly as llama.cpp tokenizes).\n"
        "With no --model / --data: the built-in model and the built-in dataset.\n\n"
        "options:\n"
        "  -m, --model FILE   GGUF model (architecture bitnet, ternary weights)\n"
        "  -d, --data FILE    JSON Lines dataset\n"
        "  --device ID        device (`qvac devices`; default: the fastest found)\n"
        "  --weights MODE     ternary (default) or f16: the same weights in 16 bits\n"
        "  --rank R           LoRA rank (default 16)      --alpha A  scale alpha/r (32)\n"
        "  --targets LIST     q,k,v,o,gate,up,down or all (default q,v)\n"
        "  --lr LR            peak learning rate (2e-3)   --warmup N  warm-up steps (5)\n"
        "  --steps N          optimizer steps (60)        --accum N   micro-batches a step (1)\n"
        "  --batch B          sequences a micro-batch (4) --seq-len S tokens a sequence (128)\n"
        "  --clip C           max gradient norm (1.0; 0 = off)\n"
        "  --seed N           seed of data order and adapter init (42)\n"
        "  --val-fraction F   held-out share of the data for validation loss (0.1)\n"
        "  --ckpt-every N     checkpoint every N steps (and always at the end)\n"
        "  --eval-batches N   batches the before/after losses are measured on (8)\n"
        "  --weight-decay W   AdamW decoupled weight decay (0)\n"
        "  --out DIR          where adapter.gguf, metrics.json, checkpoint.gguf go (qvac-out)\n"
        "  --resume DIR       continue the run whose checkpoint is in DIR (same options)\n"
        "  --db PATH          autotune cache to take kernel configurations from (default\n"
        "                     ~/.local/share/qvac/tune.db when it exists)\n"
        "  --tune             before the first step, tune every kernel and shape a step\n"
        "                     of this model launches on the device (verified against\n"
        "                     ref) into the cache (--db, else the default; created);\n"
        "                     shapes already cached are skipped, so only a new device\n"
        "                     or model shape costs time (tens of seconds for the\n"
        "                     built-in model, minutes at ~700M shapes on a CPU device).\n"
        "                     On by default with 4 configurations a shape wherever the\n"
        "                     cache can be written; --tune makes it 8 and an error\n"
        "                     when it cannot\n"
        "  --no-tune          do not tune: the cached or default configurations\n"
        "  --tune-evals N     configurations measured per kernel and shape (implies\n"
        "                     --tune)\n"
        "  --checkpoint-activations\n"
        "                     keep only each layer's input and recompute the layer in\n"
        "                     the backward: far less activation memory for one more\n"
        "                     forward pass a step (the losses are the same to the bit)\n"
        "  --chat-template N  llama3, llama2, chatml, bitnet (...; `qvac inspect` shows the\n"
        "                     model's): how \"messages\" are rendered (default: detected\n"
        "                     from the model's tokenizer.chat_template)\n"
        "  --long POLICY      examples longer than the model's context: skip (default,\n"
        "                     counted) or truncate\n"
        "  --max-line BYTES   longest dataset line read (default 16777216); a longer one\n"
        "                     is skipped and reported with its line number\n"
        "  --json             print the summary as one JSON object\n"
        "  -h, --help         this help\n"
        "Also -o for --out, -s for --seed; --opt=value works for every option.\n"
        "Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted (Ctrl-C,\n"
        "SIGTERM: the checkpoint is written first).\n\n"
        "The summary gives MFU, model FLOP utilisation: the step's model FLOPs\n"
        "(docs/training.md) per second over the throughput the base matmul kernel\n"
        "(quantize_act + ternary_matmul, or f16_matmul) reaches on the device at the\n"
        "model's shapes in its cached configurations, measured after the run\n"
        "(--json: mfu, gemm_gflops, step_flops).\n\n"
        "Ctrl-C stops after the current step and writes a checkpoint; --resume goes on.\n");
}

static void defaults(targs *a, const char *cmd)
{
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    qv_train_opts_default(&a->o);
    a->val_fraction = 0.1;
    a->tune = strcmp(cmd, "finetune") && strcmp(cmd, "compare") ? 0 : -1;
    a->tokens = 120;
    a->temperature = 0.7f;
}

typedef struct run_out {
    qv_train_result r;
    char device[32];
    double seconds;
    /* --tune */
    int tuned_run;
    qv_train_tune_result tune;
    /* MFU: model FLOPs of one optimizer step, the base matmul's measured
     * GFLOP/s at the model's shapes (0: not measured), their ratio */
    double step_flops, gemm_gflops, mfu;
} run_out;

static qv_tune_cache *open_cache_rw(const char *db, qv_err *err)
{
    char path[1024];
    if (!db) {
        if (qv_tune_cache_default_path(path, sizeof path, err))
            return NULL;
        db = path;
    }
    qv_tune_cache *c = NULL;
    if (qv_tune_cache_open(db, 0, 2000, &c, err))
        return NULL;
    return c;
}

static int on_tune_progress(void *user, const qv_tune_progress *p)
{
    prog *ps = user;
    if (!ps->quiet && (p->evals == p->budget || p->evals == 1))
        fprintf(stderr, "%s: tune %s %s: %zu/%zu configurations, best %.3f ms\n",
                ps->label, p->kernel, p->bucket, p->evals, p->budget,
                isfinite(p->best_ns) ? p->best_ns / 1e6 : 0.0);
    return g_stop ? 1 : 0;
}

/* Loads, splits, trains; prints progress. */
static qv_status run_finetune(targs *a, qv_devlist *devs, qv_train_opts *o,
                              const char *label, int quiet, run_out *ro,
                              qv_err *err)
{
    memset(ro, 0, sizeof *ro);
    qv_model *m = NULL;
    qv_dataset *all = NULL, *tr = NULL, *va = NULL;
    qv_tune_cache *cache = NULL;
    qv_status s = QV_OK;
    if (a->tune > 0) {
        if (!(cache = open_cache_rw(a->db, err)))
            s = err->code ? err->code : QV_ERR_IO;
    } else if (a->tune < 0) { /* by default: tune where the cache can be written */
        qv_err ce = {0};
        if (!(cache = open_cache_rw(a->db, &ce))) {
            if (!quiet)
                fprintf(stderr, "%s: not tuning (%s); running the cached or default "
                        "configurations\n", label, ce.msg);
            a->tune = 0;
            cache = open_cache(a->db);
        }
    } else {
        cache = open_cache(a->db);
    }
    if (!s)
        s = load_model(a->model, &m, err);
    if (!s)
        s = load_data(a, m, &all, err);
    if (!s)
        s = qv_dataset_split(all, a->val_fraction, o->seed, &tr, &va, err);
    qv_device *dev = s ? NULL : qv_cli_pick_device(devs, a->device, err);
    if (!s && !dev)
        s = err->code ? err->code : QV_ERR_NOT_FOUND;
    if (!s) {
        snprintf(ro->device, sizeof ro->device, "%s", dev->info.id);
        prog ps = {.quiet = quiet, .label = label};
        qv_progress_init(&ps.line, 2.0);
        o->cache = cache;
        o->progress = on_progress;
        o->progress_user = &ps;
        o->stop = &g_stop;
        if (!quiet)
            fprintf(stderr, "%s: %s (%s), %s weights, %zu train / %zu validation "
                    "examples\n", label, dev->info.id, dev->info.name,
                    qv_weights_name(o->weights), qv_dataset_n_examples(tr),
                    va ? qv_dataset_n_examples(va) : (size_t)0);
        qv_device *ref = qv_devlist_find(devs, "ref");
        if (a->tune < 0 && (!ref || dev == ref))
            a->tune = 0; /* nothing to verify against, or nothing to tune */
        if (a->tune && !ref)
            s = qv_fail(err, QV_ERR_NOT_FOUND,
                        "%s: --tune verifies candidates on the reference device, "
                        "which is missing", label);
        if (!s && a->tune) {
            qv_train_shape_opts so = {
                .weights = o->weights, .batch = o->batch, .seq = o->seq,
                .rank = o->rank, .targets = o->targets, .full = o->full,
                .head_f16 = qv_model_head_f16(m),
                .max_alloc = dev->info.max_alloc_bytes};
            qv_train_tune_opts to = {
                .budget_evals = a->tune_evals > 0 ? (size_t)a->tune_evals
                                : a->tune < 0 ? 4 : 8,
                .progress = on_tune_progress, .progress_user = &ps, .stop = &g_stop};
            s = qv_train_tune(cache, dev, ref, m, &so, &to, &ro->tune, err);
            ro->tuned_run = 1;
            if (!s && !quiet)
                fprintf(stderr, "%s: tuned %zu of %zu kernel shapes (%zu cached, "
                        "%zu failed) in %.1f s%s%s\n", label, ro->tune.tuned,
                        ro->tune.launches, ro->tune.cached, ro->tune.failed,
                        ro->tune.seconds, ro->tune.note[0] ? "; " : "",
                        ro->tune.note);
        }
        if (!s)
            s = qv_train_run(dev, m, tr, va && qv_dataset_n_examples(va) ? va : NULL,
                             o, &ro->r, err);
        if (!s && !ro->r.interrupted && ro->r.seconds > 0) {
            int64_t step_tokens = (int64_t)o->batch * o->seq * o->accum;
            ro->step_flops = qv_step_flops(&m->cfg, o->targets, o->rank, step_tokens,
                                           o->seq, o->full);
            qv_err e2 = {0};
            if (qv_gemm_peak(dev, cache, &m->cfg, o->weights, o->batch * o->seq,
                             &ro->gemm_gflops, &e2))
                fprintf(stderr, "%s: warning: no MFU: %s\n", label, e2.msg);
            else
                ro->mfu = qv_mfu(qv_step_flops(&m->cfg, o->targets, o->rank,
                                               ro->r.tokens, o->seq, o->full),
                                 ro->r.seconds, ro->gemm_gflops);
        }
    }
    qv_tune_cache_destroy(&cache);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    qv_dataset_free(all);
    qv_model_free(&m);
    return s;
}

static json_t *mem_json(const qv_net_memory *mm)
{
    json_t *j = json_object();
    for (int t = 0; t < QV_MEM_NTAGS; t++)
        if (mm->by_tag[t])
            json_object_set_new(j, qv_mem_tag_name((qv_mem_tag)t),
                                json_integer((json_int_t)mm->by_tag[t]));
    return j;
}

/* The figures of one run, as `--json` prints them. */
static json_t *result_json(const run_out *ro)
{
    const qv_train_result *r = &ro->r;
    json_t *j = json_object();
    json_object_set_new(j, "steps", json_integer(r->steps_done));
    json_object_set_new(j, "train_loss_before", json_real(r->train_loss_before));
    json_object_set_new(j, "train_loss_after", json_real(r->train_loss_after));
    if (!isnan(r->val_loss_before)) {
        json_object_set_new(j, "val_loss_before", json_real(r->val_loss_before));
        json_object_set_new(j, "val_loss_after", json_real(r->val_loss_after));
    }
    json_object_set_new(j, "tokens_per_s", json_real(r->tokens_per_s));
    json_object_set_new(j, "peak_bytes", json_integer((json_int_t)r->mem.peak));
    json_object_set_new(j, "peak_bytes_by_category", mem_json(&r->mem));
    json_object_set_new(j, "trained_params", json_integer((json_int_t)r->adapter_params));
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_object_set_new(j, "step_flops", json_real(ro->step_flops));
    json_object_set_new(j, "gemm_gflops", ro->gemm_gflops > 0
                                              ? json_real(ro->gemm_gflops) : json_null());
    json_object_set_new(j, "mfu", ro->mfu > 0 ? json_real(ro->mfu) : json_null());
    if (ro->tuned_run)
        json_object_set_new(j, "tune", json_pack("{s:I, s:I, s:I, s:I, s:f}",
                            "launches", (json_int_t)ro->tune.launches,
                            "tuned", (json_int_t)ro->tune.tuned,
                            "cached", (json_int_t)ro->tune.cached,
                            "failed", (json_int_t)ro->tune.failed,
                            "seconds", ro->tune.seconds));
    return j;
}

int qv_cmd_finetune(int argc, char **argv)
{
    targs a;
    defaults(&a, "finetune");
    int rc = parse_args(argc, argv, &a, C_FT);
    if (rc)
        return rc;
    a.o.out_dir = a.out ? a.out : a.resume ? a.resume : "qvac-out";
    a.o.resume_dir = a.resume;
    qv_err err = {0};
    qv_devlist *devs = NULL;
    if (qv_devlist_open(&devs, &err))
        return qv_cli_error(&err);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    run_out ro;
    qv_status s = run_finetune(&a, devs, &a.o, "finetune", a.json, &ro, &err);
    qv_devlist_destroy(&devs);
    if (s)
        return qv_cli_error(&err);
    qv_train_result *r = &ro.r;
    if (r->interrupted) {
        fprintf(stderr, "\nqvac: interrupted at step %lld of %lld; the checkpoint "
                "is in %s: run the same command with --resume %s to go on\n",
                (long long)r->steps_done, (long long)a.o.steps, a.o.out_dir,
                a.o.out_dir);
        free(r->losses);
        return QV_EXIT_INTERRUPTED;
    }
    if (a.json) {
        json_t *j = result_json(&ro);
        json_object_set_new(j, "device", json_string(ro.device));
        json_object_set_new(j, "weights", json_string(qv_weights_name(a.o.weights)));
        json_object_set_new(j, "checkpoint_activations", json_boolean(a.o.checkpoint));
        char p[4200];
        snprintf(p, sizeof p, "%s/adapter.gguf", a.o.out_dir);
        json_object_set_new(j, "adapter", json_string(p));
        snprintf(p, sizeof p, "%s/metrics.json", a.o.out_dir);
        json_object_set_new(j, "metrics", json_string(p));
        qv_cli_print_json(j);
    } else {
        char b[32];
        printf("\n%-22s %10s %10s\n", "", "before", "after");
        printf("%-22s %10.4f %10.4f\n", "train loss", r->train_loss_before,
               r->train_loss_after);
        if (!isnan(r->val_loss_before))
            printf("%-22s %10.4f %10.4f\n", "validation loss",
                   r->val_loss_before, r->val_loss_after);
        printf("\n%-22s %s (%s weights)\n", "device", ro.device,
               qv_weights_name(a.o.weights));
        printf("%-22s %lld (from %lld)\n", "steps", (long long)r->steps_done,
               (long long)r->start_step);
        printf("%-22s %.1f\n", "tokens/s", r->tokens_per_s);
        if (ro.mfu > 0)
            printf("%-22s %.1f%% (%.3g GFLOP a step; base matmul %.1f GFLOP/s)\n",
                   "MFU", 100.0 * ro.mfu, ro.step_flops / 1e9, ro.gemm_gflops);
        printf("%-22s %llu\n", "trained parameters",
               (unsigned long long)r->adapter_params);
        qv_fmt_bytes(r->mem.peak, b, sizeof b);
        printf("%-22s %s\n", "peak device memory", b);
        for (int t = 0; t < QV_MEM_NTAGS; t++)
            if (r->mem.by_tag[t]) {
                qv_fmt_bytes(r->mem.by_tag[t], b, sizeof b);
                printf("  %-20s %s\n", qv_mem_tag_name((qv_mem_tag)t), b);
            }
        printf("\nwrote %s/adapter.gguf, %s/metrics.json, %s/checkpoint.gguf\n",
               a.o.out_dir, a.o.out_dir, a.o.out_dir);
    }
    free(r->losses);
    return QV_EXIT_OK;
}

/* ---- compare ---------------------------------------------------------------------- */

void qv_help_compare(FILE *out)
{
    fprintf(out,
        "usage: qvac compare [--model M.gguf] [--data D.jsonl] [--device ID] [--steps N]\n"
        "                    [finetune options] [--json]\n"
        "(the finetune options but --weights, --out, --resume and --ckpt-every)\n\n"
        "Runs the same short fine-tune twice on one device, one after the other: with the\n"
        "base weights ternary (2 bits a weight, the ternary kernels) and with the same\n"
        "weights in 16 bits (f16 kernels), and prints throughput and peak device memory of\n"
        "both and their ratios. Defaults: the built-in model and data, 8 steps.\n"
        "--json prints one object with both runs (each with mfu, gemm_gflops and\n"
        "step_flops, as `qvac finetune --json`) and memory_reduction (the fraction of\n"
        "peak memory the ternary run saves). --tune tunes each mode's kernels at the\n"
        "model's shapes first (see `qvac finetune --help`).\n");
}

int qv_cmd_compare(int argc, char **argv)
{
    targs a;
    defaults(&a, "compare");
    a.o.steps = 8;
    a.o.warmup = 2;
    a.o.eval_batches = 2;
    int rc = parse_args(argc, argv, &a, C_CMP);
    if (rc)
        return rc;
    qv_err err = {0};
    qv_devlist *devs = NULL;
    if (qv_devlist_open(&devs, &err))
        return qv_cli_error(&err);
    signal(SIGINT, on_sigint);
    run_out ro[2];
    const char *labels[2] = {"ternary", "f16"};
    qv_status s = QV_OK;
    for (int w = 0; w < 2 && !s; w++) {
        qv_train_opts o = a.o;
        o.weights = (qv_weights)w;
        o.out_dir = NULL;
        s = run_finetune(&a, devs, &o, labels[w], a.json, &ro[w], &err);
        if (!s && ro[w].r.interrupted)
            s = qv_fail(&err, QV_ERR_INVALID, "compare: interrupted");
    }
    qv_devlist_destroy(&devs);
    if (s)
        return qv_cli_error(&err);
    qv_train_result *t = &ro[0].r, *f = &ro[1].r;
    double red = f->mem.peak ? 1.0 - (double)t->mem.peak / (double)f->mem.peak : 0;
    double wred = f->mem.by_tag[QV_MEM_WEIGHTS]
                      ? 1.0 - (double)t->mem.by_tag[QV_MEM_WEIGHTS] /
                                  (double)f->mem.by_tag[QV_MEM_WEIGHTS]
                      : 0;
    double speed = f->tokens_per_s > 0 ? t->tokens_per_s / f->tokens_per_s : 0;
    if (a.json) {
        json_t *j = json_object();
        json_object_set_new(j, "device", json_string(ro[0].device));
        json_object_set_new(j, "steps", json_integer(a.o.steps));
        for (int w = 0; w < 2; w++)
            json_object_set_new(j, labels[w], result_json(&ro[w]));
        json_object_set_new(j, "memory_reduction", json_real(red));
        json_object_set_new(j, "weights_memory_reduction", json_real(wred));
        json_object_set_new(j, "speedup", json_real(speed));
        qv_cli_print_json(j);
    } else {
        char b1[32], b2[32];
        printf("\ncompare on %s, %lld steps of %d x %d tokens\n\n", ro[0].device,
               (long long)a.o.steps, a.o.batch, a.o.seq);
        printf("%-22s %14s %14s %10s\n", "", "ternary", "f16", "ratio");
        printf("%-22s %14.1f %14.1f %9.2fx\n", "tokens/s", t->tokens_per_s,
               f->tokens_per_s, speed);
        if (ro[0].mfu > 0 && ro[1].mfu > 0)
            printf("%-22s %13.1f%% %13.1f%%\n", "MFU", 100.0 * ro[0].mfu,
                   100.0 * ro[1].mfu);
        qv_fmt_bytes(t->mem.peak, b1, sizeof b1);
        qv_fmt_bytes(f->mem.peak, b2, sizeof b2);
        printf("%-22s %14s %14s %9.2fx\n", "peak device memory", b1, b2,
               f->mem.peak ? (double)t->mem.peak / (double)f->mem.peak : 0);
        for (int tg = 0; tg < QV_MEM_NTAGS; tg++) {
            if (!t->mem.by_tag[tg] && !f->mem.by_tag[tg])
                continue;
            qv_fmt_bytes(t->mem.by_tag[tg], b1, sizeof b1);
            qv_fmt_bytes(f->mem.by_tag[tg], b2, sizeof b2);
            printf("  %-20s %14s %14s\n", qv_mem_tag_name((qv_mem_tag)tg), b1, b2);
        }
        printf("%-22s %14.4f %14.4f\n", "train loss after", t->train_loss_after,
               f->train_loss_after);
        printf("\nmemory reduction: %.1f%% of peak device memory (weights alone: "
               "%.1f%%)\n", 100.0 * red, 100.0 * wred);
    }
    free(t->losses);
    free(f->losses);
    return QV_EXIT_OK;
}

/* ---- generate ----------------------------------------------------------------------- */

void qv_help_generate(FILE *out)
{
    fprintf(out,
        "usage: qvac generate [--model M.gguf] [--adapter A.gguf] --prompt TEXT\n"
        "                     [--tokens N] [--temperature T] [--seed N] [--device ID]\n"
        "                     [--weights ternary|f16] [--act-quant bitnet|llamacpp]\n"
        "                     [--stop STR] [--json]\n"
        "(-m model, -p prompt, -n tokens, -s seed)\n\n"
        "Continues TEXT with the model (the built-in one by default), with a LoRA adapter\n"
        "from `qvac finetune` when given, so you can see what the adapter changed.\n"
        "Temperature 0 is greedy; the default is 0.7 (seeded sampling, 120 tokens).\n"
        "--act-quant llamacpp rounds each BitLinear's input as llama.cpp's CPU backend\n"
        "does (q8_K blocks for TQ2_0, half for F16 weights) instead of BitNet's per-token\n"
        "int8 (bitnet, the default, what qvac trains with): the same continuation as\n"
        "llama.cpp's `llama-completion -m M --lora A --temp 0 -ctk f32 -ctv f32`.\n"
        "The text is written as it comes, as valid UTF-8 (bytes the model produced\n"
        "that are not UTF-8 become U+FFFD). --stop STR ends the text before the first\n"
        "STR it would contain. --json prints one object at the end: prompt, text,\n"
        "tokens, stopped (end of text, stop string, length, interrupted),\n"
        "tokens_per_s, device.\n");
}

/* What generate has produced: the raw bytes of the pieces, how much of
 * them went to stdout, and why it stopped. Text reaches a terminal (or the
 * JSON) only as valid UTF-8: a byte sequence that is not UTF-8 becomes
 * U+FFFD; a sequence cut at the end of a token waits for the next one. */
typedef struct gen_text {
    char *p;
    size_t n, cap, written;
    int oom;
} gen_text;

static void gen_add(gen_text *g, const char *b, size_t n)
{
    if (g->n + n + 1 > g->cap) {
        size_t nc = g->cap ? 2 * g->cap : 256;
        while (nc < g->n + n + 1)
            nc *= 2;
        char *np = realloc(g->p, nc);
        if (!np) {
            g->oom = 1;
            return;
        }
        g->p = np, g->cap = nc;
    }
    memcpy(g->p + g->n, b, n);
    g->n += n;
    g->p[g->n] = '\0';
}

/* Writes [from, to) of raw as valid UTF-8 to f (or appends it to out);
 * returns how far it got (a cut sequence at the end stays unless final). */
static size_t utf8_out(const char *raw, size_t from, size_t to, int final, FILE *f,
                       gen_text *out)
{
    static const char REPL[] = "\xef\xbf\xbd"; /* U+FFFD */
    size_t i = from;
    while (i < to) {
        const unsigned char *u = (const unsigned char *)raw + i;
        int n = qv_utf8_seq(u, to - i);
        if (n < 0 && !final)
            break;
        if (n <= 0 || (n == 1 && u[0] == 0)) { /* not UTF-8 (or a NUL) */
            if (f)
                fwrite(REPL, 1, 3, f);
            else
                gen_add(out, REPL, 3);
            i++;
            continue;
        }
        if (f)
            fwrite(u, 1, (size_t)n, f);
        else
            gen_add(out, (const char *)u, (size_t)n);
        i += (size_t)n;
    }
    return i;
}

int qv_cmd_generate(int argc, char **argv)
{
    targs a;
    defaults(&a, "generate");
    int rc = parse_args(argc, argv, &a, C_GEN);
    if (rc)
        return rc;
    if (!a.prompt)
        return qv_cli_usage("generate", "--prompt TEXT is required");
    qv_err err = {0};
    qv_model *m = NULL;
    if (load_model(a.model, &m, &err))
        return qv_cli_error(&err);
    int32_t rank = 0;
    float alpha = 0;
    unsigned targets = 0;
    if (a.adapter && qv_adapter_info(a.adapter, &rank, &alpha, &targets, &err)) {
        qv_model_free(&m);
        return qv_cli_error(&err);
    }
    qv_devlist *devs = NULL;
    if (qv_devlist_open(&devs, &err)) {
        qv_model_free(&m);
        return qv_cli_error(&err);
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    qv_device *dev = qv_cli_pick_device(devs, a.device, &err);
    /* the model's own tokenizer, or qvac's bytes */
    qv_dataset_opts dopt;
    qv_vocab *vocab = NULL;
    int32_t *pids = NULL;
    size_t pn = 0;
    qv_status vs = data_opts(&a, m, &dopt, &vocab, &err);
    if (!vs && vocab)
        vs = qv_vocab_tokenize(vocab, a.prompt, strlen(a.prompt),
                               qv_vocab_wants_bos(vocab), false, &pids, &pn, &err);
    if (vs) {
        qv_devlist_destroy(&devs);
        qv_model_free(&m);
        qv_vocab_free(vocab);
        return qv_cli_error(&err);
    }
    size_t plen = vocab ? pn : strlen(a.prompt);
    int32_t ctx = m->cfg.ctx;
    int32_t *ids = malloc(((size_t)ctx + plen + (size_t)a.tokens + 2) * 4);
    float *logits = malloc((size_t)m->cfg.vocab * 4);
    qv_net *n = NULL;
    int32_t cur_s = 0;
    qv_status s = dev ? QV_OK : QV_ERR_NOT_FOUND;
    if (!s && (!ids || !logits))
        s = qv_fail(&err, QV_ERR_NOMEM, "generate: out of memory");
    int32_t len = 0;
    if (!s) {
        if (vocab) {
            memcpy(ids, pids, pn * 4);
            len = (int32_t)pn;
        } else {
            ids[len++] = QV_TOK_BOS;
            qv_tok_encode(a.prompt, plen, ids + len);
            len += (int32_t)plen;
        }
        if (!a.json) { /* the prompt too, as valid UTF-8 */
            utf8_out(a.prompt, 0, strlen(a.prompt), 1, stdout, NULL);
            fflush(stdout);
        }
    }
    free(pids);
    gen_text gen = {0};
    size_t stop_len = a.stop_at ? strlen(a.stop_at) : 0;
    const char *why = "length";
    int ntok = 0;
    double t_gen = 0;
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    int32_t pad = vocab ? (qv_vocab_eos(vocab) >= 0 ? qv_vocab_eos(vocab) : 0) : QV_TOK_EOS;
    qv_rng rng = {a.o.seed * 0x9E3779B97F4A7C15ull + 1};
    int32_t *window = malloc((size_t)ctx * 4);
    if (!window && !s)
        s = qv_fail(&err, QV_ERR_NOMEM, "generate: out of memory");
    for (int t = 0; t < a.tokens && !s && !g_stop; t++) {
        /* the last ctx tokens, in a net just long enough (grown by doubling:
         * the cost of a step is that of its window) */
        int32_t w = len < ctx ? len : ctx;
        int32_t need = 16;
        while (need < w)
            need *= 2;
        if (need > ctx)
            need = ctx;
        if (need != cur_s) {
            qv_net_free(&n);
            qv_net_opts no = {.weights = a.o.weights, .batch = 1, .seq = need,
                              .rank = rank, .alpha = alpha, .targets = targets,
                              .seed = 1, .act_quant = a.act_quant};
            s = qv_net_new(dev, m, &no, &n, &err);
            if (!s && a.adapter)
                s = qv_adapter_load(n, a.adapter, &err);
            if (s)
                break;
            cur_s = need;
        }
        for (int32_t i = 0; i < cur_s; i++)
            window[i] = i < w ? ids[len - w + i] : pad;
        s = qv_net_run(n, window, NULL, 0, 0.0f, NULL, NULL, &err);
        if (!s)
            s = qv_net_logits(n, w - 1, logits, &err);
        if (s)
            break;
        int32_t next = 0;
        if (a.temperature <= 0.0f) {
            for (int32_t v = 1; v < m->cfg.vocab; v++)
                if (logits[v] > logits[next])
                    next = v;
        } else {
            double mx = -INFINITY, sum = 0.0;
            for (int32_t v = 0; v < m->cfg.vocab; v++)
                mx = fmax(mx, logits[v]);
            for (int32_t v = 0; v < m->cfg.vocab; v++)
                sum += exp((logits[v] - mx) / a.temperature);
            double u = (double)(qv_rng_next(&rng) >> 11) / 9007199254740992.0 * sum;
            for (next = 0; next < m->cfg.vocab - 1; next++) {
                u -= exp((logits[next] - mx) / a.temperature);
                if (u <= 0)
                    break;
            }
        }
        if (vocab ? qv_vocab_is_eog(vocab, next) : next == QV_TOK_EOS) {
            why = "end of text";
            break;
        }
        ids[len++] = next;
        ntok++;
        if (vocab) {
            size_t pl = 0;
            const char *piece = qv_vocab_token_to_piece(vocab, next, false, &pl);
            if (piece && pl)
                gen_add(&gen, piece, pl);
        } else {
            char c[4];
            if (qv_tok_decode(&next, 1, c, sizeof c) == 1)
                gen_add(&gen, c, 1);
        }
        if (gen.oom) {
            s = qv_fail(&err, QV_ERR_NOMEM, "generate: out of memory");
            break;
        }
        if (stop_len && gen.n >= stop_len &&
            !memcmp(gen.p + gen.n - stop_len, a.stop_at, stop_len)) {
            gen.n -= stop_len; /* the stop string is not part of the text */
            why = "stop string";
            break;
        }
        /* stream what can no longer turn into the stop string */
        size_t safe = gen.n > (stop_len ? stop_len - 1 : 0) ? gen.n - (stop_len ? stop_len - 1 : 0) : 0;
        if (!a.json && safe > gen.written) {
            gen.written = utf8_out(gen.p, gen.written, safe, 0, stdout, NULL);
            fflush(stdout);
        }
    }
    if (g_stop && !s && strcmp(why, "end of text") && strcmp(why, "stop string"))
        why = "interrupted";
    struct timespec ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    t_gen = (double)(ts1.tv_sec - ts0.tv_sec) + 1e-9 * (double)(ts1.tv_nsec - ts0.tv_nsec);
    qv_vocab_free(vocab);
    if (a.json) {
        gen_text clean = {0};
        if (gen.n)
            utf8_out(gen.p, 0, gen.n, 1, NULL, &clean);
        gen_text cprompt = {0};
        utf8_out(a.prompt, 0, strlen(a.prompt), 1, NULL, &cprompt);
        if (!s)
            qv_cli_print_json(json_pack("{s:s, s:s, s:i, s:s, s:f, s:s}", "prompt",
                                        cprompt.p ? cprompt.p : "", "text",
                                        clean.p ? clean.p : "", "tokens", ntok,
                                        "stopped", why, "tokens_per_s",
                                        t_gen > 0 ? ntok / t_gen : 0.0, "device",
                                        dev ? dev->info.id : ""));
        free(clean.p);
        free(cprompt.p);
    } else {
        utf8_out(gen.p ? gen.p : "", gen.written, gen.n, 1, stdout, NULL);
        fputc('\n', stdout);
    }
    free(gen.p);
    int was_stopped = !strcmp(why, "interrupted");
    free(window);
    free(ids);
    free(logits);
    qv_net_free(&n);
    qv_devlist_destroy(&devs);
    qv_model_free(&m);
    if (s)
        return qv_cli_error(&err);
    return was_stopped ? QV_EXIT_INTERRUPTED : QV_EXIT_OK;
}

/* ---- pretrain --------------------------------------------------------------------------- */

void qv_help_pretrain(FILE *out)
{
    fprintf(out,
        "usage: qvac pretrain [--data TEXT_FILE] [--out MODEL.gguf] [--device ID]\n"
        "                     [--dim D] [--layers L] [--heads H] [--kv-heads H] [--ffn F]\n"
        "                     [--ctx C] [--act silu|relu2] [--rope neox|norm]\n"
        "                     [--head tied|untied] [--steps N] [--lr LR] [--batch B]\n"
        "                     [--seq-len S] [--seed N] [--ckpt-every N] [--resume DIR]\n"
        "                     [--warmup N] [--accum N] [--clip C] [--weight-decay W]\n"
        "                     [--eval-batches N] [--db PATH] [--checkpoint-activations]\n"
        "                     [--json]\n"
        "(-d data, -o out, -s seed; the training options as `qvac finetune --help` says)\n\n"
        "Trains a BitNet b1.58 model from scratch with quantisation-aware training (f32\n"
        "shadow weights, ternary forward, straight-through estimator) on plain text, and\n"
        "writes it as GGUF (TQ2_0 weights where rows are multiples of 256). This is how\n"
        "the built-in model is made (see docs/data.md for the exact command).\n"
        "Defaults: the built-in corpus; dim 256, 3 layers, 4 heads (2 kv), ffn 512,\n"
        "ctx 128; 2000 steps of 4 x 128 tokens at lr 3e-3. The defaults are llama.cpp's\n"
        "'bitnet' graph exactly (SiLU-gated FFN, sub-norms, NEOX RoPE, head tied to the\n"
        "embedding) and the file says 'bitnet'; --act relu2 with the tied head and NEOX\n"
        "RoPE is BitNet b1.58 2B4T ('" QV_ARCH_B158_NAME "'); any other choice is written\n"
        "as 'qvac-bitnet' with its semantics as explicit keys (docs/formats.md).\n");
}

int qv_cmd_pretrain(int argc, char **argv)
{
    targs a;
    defaults(&a, "pretrain");
    a.mc = (qv_model_config){
        .vocab = QV_TOK_VOCAB, .dim = 256, .n_layers = 3, .n_heads = 4,
        .n_kv_heads = 2, .ffn_dim = 512, .ctx = 128, .rope_theta = 10000.0f,
        .norm_eps = 1e-5f, .act = QV_ACT_SILU, .sub_norm = 1, .tied = 1,
        .rope_neox = 1,
    };
    a.o.full = 1;
    a.o.steps = 2000;
    a.o.warmup = 50;
    a.o.lr = 3e-3f;
    a.o.batch = 4;
    a.o.seq = 128;
    a.o.weight_decay = 0.01f;
    a.o.ckpt_every = 100;
    a.o.eval_batches = 16;
    int rc = parse_args(argc, argv, &a, C_PRE);
    if (rc)
        return rc;
    if (a.o.seq > a.mc.ctx)
        return qv_cli_usage("pretrain", "--seq-len %d exceeds --ctx %d", a.o.seq, a.mc.ctx);
    const char *out = a.out ? a.out : "qvac-tiny.gguf";
    char ckdir[4200];
    snprintf(ckdir, sizeof ckdir, "%s.ckpt", out);
    a.o.out_dir = ckdir;
    a.o.resume_dir = a.resume;
    qv_err err = {0};
    qv_model *m = NULL;
    qv_dataset *all = NULL, *tr = NULL, *va = NULL;
    qv_status s = qv_model_init_random(&a.mc, a.o.seed, &m, &err);
    if (!s) {
        if (a.data) {
            FILE *f = fopen(a.data, "rb");
            if (!f) {
                s = qv_fail(&err, QV_ERR_NOT_FOUND, "cannot open %s", a.data);
            } else {
                fseek(f, 0, SEEK_END);
                long sz = ftell(f);
                fseek(f, 0, SEEK_SET);
                char *b = sz > 0 ? malloc((size_t)sz) : NULL;
                if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz)
                    s = qv_fail(&err, QV_ERR_IO, "cannot read %s", a.data);
                else
                    s = qv_dataset_from_text(b, (size_t)sz, a.data, &all, &err);
                free(b);
                fclose(f);
            }
        } else {
            const qv_embedded_file *f = qv_embedded_find(BUILTIN_CORPUS);
            if (!f)
                s = qv_fail(&err, QV_ERR_NOT_FOUND,
                            "this build has no built-in corpus; pass --data FILE");
            else
                s = qv_dataset_from_text((const char *)f->data, f->size,
                                         "built-in corpus", &all, &err);
        }
    }
    if (!s)
        s = qv_dataset_split(all, 0.02, a.o.seed, &tr, &va, &err);
    qv_devlist *devs = NULL;
    if (!s)
        s = qv_devlist_open(&devs, &err);
    qv_device *dev = s ? NULL : qv_cli_pick_device(devs, a.device, &err);
    if (!s && !dev)
        s = QV_ERR_NOT_FOUND;
    qv_train_result r;
    memset(&r, 0, sizeof r);
    if (!s) {
        uint64_t nt, no;
        qv_model_count(&a.mc, &nt, &no);
        fprintf(stderr, "pretrain: %s (%s): %llu ternary + %llu other parameters, "
                "%zu tokens of text\n", dev->info.id, dev->info.name,
                (unsigned long long)nt, (unsigned long long)no,
                qv_dataset_n_tokens(tr));
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
        prog ps = {.label = "pretrain"};
        qv_progress_init(&ps.line, 2.0);
        a.o.progress = on_progress;
        a.o.progress_user = &ps;
        a.o.stop = &g_stop;
        qv_tune_cache *cache = open_cache(a.db);
        a.o.cache = cache;
        s = qv_train_run(dev, m, tr, va, &a.o, &r, &err);
        qv_tune_cache_destroy(&cache);
    }
    int interrupted = !s && r.interrupted;
    if (interrupted)
        fprintf(stderr, "\nqvac: interrupted at step %lld; resume with --resume %s\n",
                (long long)r.steps_done, ckdir);
    if (!s && !interrupted) {
        qv_model_drop_shadow(m);
        s = qv_model_save(m, out, &err);
    }
    if (!s && !interrupted && a.json) {
        json_t *j = json_pack("{s:s, s:I, s:f, s:f, s:f, s:s}", "model", out, "steps",
                              (json_int_t)r.steps_done, "tokens_per_s", r.tokens_per_s,
                              "seconds", r.seconds, "peak_bytes",
                              (double)r.mem.peak, "device", dev ? dev->info.id : "");
        json_object_set_new(j, "train_loss_before", json_real(r.train_loss_before));
        json_object_set_new(j, "train_loss_after", json_real(r.train_loss_after));
        if (isfinite(r.val_loss_before)) {
            json_object_set_new(j, "val_loss_before", json_real(r.val_loss_before));
            json_object_set_new(j, "val_loss_after", json_real(r.val_loss_after));
        }
        qv_cli_print_json(j);
    } else if (!s && !interrupted) {
        printf("pretrain: loss %.4f -> %.4f (validation %.4f -> %.4f), %.0f tok/s; "
               "wrote %s\n", r.train_loss_before, r.train_loss_after,
               r.val_loss_before, r.val_loss_after, r.tokens_per_s, out);
    }
    free(r.losses);
    qv_devlist_destroy(&devs);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    qv_dataset_free(all);
    qv_model_free(&m);
    if (s)
        return qv_cli_error(&err);
    return interrupted ? QV_EXIT_INTERRUPTED : QV_EXIT_OK;
}

/* ---- eval ------------------------------------------------------------------------------ */

void qv_help_eval(FILE *out)
{
    fprintf(out,
        "usage: qvac eval [--model M.gguf] [--adapter A.gguf] [--data D.jsonl | --text T.txt]\n"
        "                 [--split all|val|train] [--val-fraction F] [--seed N]\n"
        "                 [--batch B] [--seq-len S] [--max-batches N]\n"
        "                 [--act-quant bitnet|llamacpp] [--device ID] [--dump DIR] [--json]\n\n"
        "Loss and perplexity of the model (the built-in one by default), with an\n"
        "adapter when given.\n"
        "  --data: a dataset as `finetune` reads it (the built-in one by default), with\n"
        "     the same tokenizer, chat template and masking; --split val is exactly the\n"
        "     validation set a finetune with the same --val-fraction and --seed holds\n"
        "     out (default: all). Rows of --seq-len tokens (default 128).\n"
        "  --text: plain text, as llama-perplexity reads it: BOS + the tokens, cut into\n"
        "     chunks of --seq-len (default: the model's context), each starting with\n"
        "     BOS, scoring the second half of every chunk.\n"
        "  --act-quant: bitnet (default; BitNet b1.58's per-token int8, what qvac trains\n"
        "     with) or llamacpp (the rounding llama.cpp's CPU matmuls apply).\n"
        "  --dump DIR: writes DIR/tokens.i32, targets.i32 (-1: not scored) and\n"
        "     logits.f32 (rows x seq [x vocab], little-endian) and DIR/meta.json.\n");
}

/* llama-perplexity's windows over text: BOS + tokens, chunks of S whose
 * first token is BOS, positions S/2 .. S-2 scored (predicting the next). */
static qv_status text_rows(const targs *a, const qv_model *m, int32_t S,
                           int32_t **tok, int32_t **tgt, int32_t *rows,
                           qv_err *err)
{
    void *map = NULL;
    size_t n = 0;
    qv_status s = qv_file_map(a->text, "text", &map, &n, err);
    if (s)
        return s;
    const char *text = map ? map : "";
    qv_dataset_opts dopt;
    qv_vocab *vocab = NULL;
    int32_t *ids = NULL;
    size_t nid = 0;
    int32_t bos = QV_TOK_BOS;
    s = data_opts(a, m, &dopt, &vocab, err);
    if (!s && vocab) {
        bos = qv_vocab_bos(vocab);
        bool add = qv_vocab_wants_bos(vocab) && bos >= 0;
        s = qv_vocab_tokenize(vocab, text, n, add, false, &ids, &nid, err);
        if (!add)
            bos = -1;
    } else if (!s) {
        ids = malloc((n + 1) * 4);
        if (!ids)
            s = qv_fail(err, QV_ERR_NOMEM, "eval: out of memory");
        else {
            ids[0] = QV_TOK_BOS;
            qv_tok_encode(text, n, ids + 1);
            nid = n + 1;
        }
    }
    qv_file_unmap(map, n);
    qv_vocab_free(vocab);
    if (s)
        return s;
    size_t chunks = nid / (size_t)S;
    if (chunks < 1) {
        free(ids);
        return qv_fail(err, QV_ERR_INVALID,
                       "%s has %zu tokens: a chunk of --seq-len %d needs at least "
                       "that many (llama-perplexity wants two chunks)", a->text,
                       nid, S);
    }
    if (chunks > (size_t)INT32_MAX / (size_t)S)
        chunks = (size_t)INT32_MAX / (size_t)S;
    *tok = malloc(chunks * (size_t)S * 4);
    *tgt = malloc(chunks * (size_t)S * 4);
    if (!*tok || !*tgt) {
        free(ids);
        free(*tok);
        free(*tgt);
        return qv_fail(err, QV_ERR_NOMEM, "eval: out of memory");
    }
    int32_t first = S / 2;
    for (size_t c = 0; c < chunks; c++) {
        int32_t *t = *tok + c * (size_t)S, *g = *tgt + c * (size_t)S;
        memcpy(t, ids + c * (size_t)S, (size_t)S * 4);
        if (bos >= 0)
            t[0] = bos;
        for (int32_t k = 0; k < S; k++)
            g[k] = k >= first && k < S - 1 ? ids[c * (size_t)S + (size_t)k + 1] : -1;
    }
    free(ids);
    *rows = (int32_t)chunks;
    return QV_OK;
}

static qv_status dump_open(const char *dir, const char *name, FILE **f, qv_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *f = fopen(path, "wb");
    if (!*f)
        return qv_fail(err, QV_ERR_IO, "%s: %s", path, strerror(errno));
    return QV_OK;
}

int qv_cmd_eval(int argc, char **argv)
{
    targs a;
    defaults(&a, "eval");
    a.o.seq = 0;
    int rc = parse_args(argc, argv, &a, C_EVAL);
    if (rc)
        return rc;
    if (a.text && a.data)
        return qv_cli_usage("eval", "give --data or --text, not both");
    if (a.text && a.split)
        return qv_cli_usage("eval", "--split is for --data (a dataset)");
    qv_err err = {0};
    qv_model *m = NULL;
    if (load_model(a.model, &m, &err))
        return qv_cli_error(&err);
    int32_t S = a.o.seq ? a.o.seq : a.text ? m->cfg.ctx : (m->cfg.ctx < 128 ? m->cfg.ctx : 128);
    if (S > m->cfg.ctx) {
        int32_t ctx = m->cfg.ctx;
        qv_model_free(&m);
        return qv_cli_usage("eval", "--seq-len %d is longer than the model's context of %d",
                            S, ctx);
    }
    int32_t B = a.o.batch, rank = 0;
    float alpha = 0;
    unsigned targets = 0;
    qv_status s = QV_OK;
    if (a.adapter)
        s = qv_adapter_info(a.adapter, &rank, &alpha, &targets, &err);
    /* the rows: text windows, or a dataset walked once */
    int32_t *ttok = NULL, *ttgt = NULL, trows = 0;
    qv_dataset *all = NULL, *tr = NULL, *va = NULL;
    const qv_dataset *ds = NULL;
    if (!s && a.text) {
        s = text_rows(&a, m, S, &ttok, &ttgt, &trows, &err);
    } else if (!s) {
        s = load_data(&a, m, &all, &err);
        if (!s && a.split && strcmp(a.split, "all"))
            s = qv_dataset_split(all, a.val_fraction, a.o.seed, &tr, &va, &err);
        if (!s) {
            ds = !a.split || !strcmp(a.split, "all") ? all
                 : !strcmp(a.split, "val")           ? va
                                                     : tr;
            if (!ds || !qv_dataset_n_examples(ds))
                s = qv_fail(&err, QV_ERR_INVALID, "eval: the %s split of %s is empty",
                            a.split, qv_dataset_name(all));
        }
    }
    qv_devlist *devs = NULL;
    qv_device *dev = NULL;
    if (!s && !(s = qv_devlist_open(&devs, &err))) {
        dev = qv_cli_pick_device(devs, a.device, &err);
        if (!dev)
            s = err.code ? err.code : QV_ERR_NOT_FOUND;
    }
    signal(SIGINT, on_sigint);
    qv_tune_cache *cache = open_cache(a.db);
    qv_net *n = NULL;
    if (!s) {
        qv_net_opts no = {.weights = a.o.weights, .batch = B, .seq = S,
                          .rank = rank, .alpha = alpha, .targets = targets,
                          .seed = 1, .act_quant = a.act_quant, .cache = cache,
                          .keep_logits = a.dump != NULL};
        s = qv_net_new(dev, m, &no, &n, &err);
        if (!s && a.adapter)
            s = qv_adapter_load(n, a.adapter, &err);
    }
    FILE *ft = NULL, *fg = NULL, *fl = NULL;
    if (!s && a.dump) {
        if (mkdir(a.dump, 0755) && errno != EEXIST)
            s = qv_fail(&err, QV_ERR_IO, "%s: %s", a.dump, strerror(errno));
        if (!s)
            s = dump_open(a.dump, "tokens.i32", &ft, &err);
        if (!s)
            s = dump_open(a.dump, "targets.i32", &fg, &err);
        if (!s)
            s = dump_open(a.dump, "logits.f32", &fl, &err);
    }
    size_t cnt = (size_t)B * (size_t)S;
    int32_t *tok = malloc(cnt * 4), *tgt = malloc(cnt * 4);
    float *lg = malloc((size_t)m->cfg.vocab * 4);
    if (!s && (!tok || !tgt || !lg))
        s = qv_fail(&err, QV_ERR_NOMEM, "eval: out of memory");
    double sum = 0.0;
    int64_t count = 0, rows_done = 0;
    qv_cursor cur = {0, 0};
    int32_t next_row = 0;
    int tty = isatty(2);
    for (long b = 0; !s && !g_stop && (!a.max_batches || b < a.max_batches); b++) {
        int rows = 0;
        if (a.text) {
            int32_t pad = ttok ? ttok[0] : 0;
            for (int32_t r = 0; r < B; r++) {
                int32_t src = next_row + r;
                for (int32_t k = 0; k < S; k++) {
                    tok[(size_t)r * S + k] = src < trows ? ttok[(size_t)src * S + k] : pad;
                    tgt[(size_t)r * S + k] = src < trows ? ttgt[(size_t)src * S + k] : -1;
                }
                if (src < trows)
                    rows++;
            }
            next_row += rows;
        } else {
            s = qv_dataset_eval_batch(ds, &cur, B, S, tok, tgt, &rows, &err);
        }
        if (s || rows == 0)
            break;
        s = qv_net_run(n, tok, tgt, 0, 1.0f, &sum, &count, &err);
        if (!s && ft) {
            if (fwrite(tok, 4, (size_t)rows * S, ft) != (size_t)rows * S ||
                fwrite(tgt, 4, (size_t)rows * S, fg) != (size_t)rows * S)
                s = qv_fail(&err, QV_ERR_IO, "%s: write error", a.dump);
            for (int32_t i = 0; !s && i < rows * S; i++) {
                s = qv_net_logits(n, i, lg, &err);
                if (!s && fwrite(lg, 4, (size_t)m->cfg.vocab, fl) != (size_t)m->cfg.vocab)
                    s = qv_fail(&err, QV_ERR_IO, "%s: write error", a.dump);
            }
        }
        rows_done += rows;
        if (tty && !a.json)
            fprintf(stderr, "\reval: %lld rows, %lld tokens scored, loss %.4f",
                    (long long)rows_done, (long long)count,
                    count ? sum / (double)count : 0.0);
    }
    if (tty && !a.json)
        fputc('\n', stderr);
    if (ft && fclose(ft) && !s)
        s = qv_fail(&err, QV_ERR_IO, "%s: write error", a.dump);
    if (fg && fclose(fg) && !s)
        s = qv_fail(&err, QV_ERR_IO, "%s: write error", a.dump);
    if (fl && fclose(fl) && !s)
        s = qv_fail(&err, QV_ERR_IO, "%s: write error", a.dump);
    if (!s && g_stop)
        s = qv_fail(&err, QV_ERR_INVALID, "eval: interrupted");
    if (!s && !count)
        s = qv_fail(&err, QV_ERR_INVALID, "eval: nothing to score (no target token)");
    double loss = count ? sum / (double)count : NAN;
    json_t *j = NULL;
    if (!s) {
        j = json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:s, s:f, s:f, s:I, s:I, s:i, s:i}",
                      "model", a.model ? a.model : "built-in",
                      "adapter", a.adapter,
                      "data", a.text ? a.text : a.data,
                      "mode", a.text ? "text" : "dataset",
                      "act_quant", qv_act_quant_name(a.act_quant),
                      "device", dev->info.id, "loss", loss, "perplexity", exp(loss),
                      "tokens", (json_int_t)count, "rows", (json_int_t)rows_done,
                      "seq", S, "vocab", m->cfg.vocab);
        if (!j)
            s = qv_fail(&err, QV_ERR_NOMEM, "eval: out of memory");
        else if (!a.text)
            json_object_set_new(j, "split", json_string(a.split ? a.split : "all"));
    }
    if (!s && a.dump) {
        char path[4096];
        snprintf(path, sizeof path, "%s/meta.json", a.dump);
        if (json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS))
            s = qv_fail(&err, QV_ERR_IO, "%s: cannot write", path);
    }
    if (!s) {
        if (a.json) {
            char *txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
            if (txt)
                puts(txt);
            free(txt);
        } else {
            printf("loss %.6f nats/token, perplexity %.4f over %lld tokens (%lld rows of %d; "
                   "%s, act-quant %s)\n", loss, exp(loss), (long long)count,
                   (long long)rows_done, S, dev->info.id, qv_act_quant_name(a.act_quant));
        }
    }
    json_decref(j);
    free(tok);
    free(tgt);
    free(lg);
    free(ttok);
    free(ttgt);
    qv_net_free(&n);
    qv_tune_cache_destroy(&cache);
    qv_devlist_destroy(&devs);
    qv_dataset_free(tr);
    qv_dataset_free(va);
    qv_dataset_free(all);
    qv_model_free(&m);
    if (s)
        return qv_cli_error(&err);
    return QV_EXIT_OK;
}
