/* formats/chat.c — chat templates: detection from a GGUF's Jinja source and
 * rendering to segments; see chat.h. The rules and the text follow
 * llama.cpp d32676d src/llama-chat.cpp (llm_chat_detect_template,
 * llm_chat_apply_template); bitnet follows BitNet b1.58 2B4T's
 * tokenizer_config.json template as llama.cpp's Jinja engine renders it. */
#include "formats/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[QV_CHAT_COUNT] = {
    [QV_CHAT_LLAMA3] = "llama3",
    [QV_CHAT_LLAMA2] = "llama2",
    [QV_CHAT_LLAMA2_SYS] = "llama2-sys",
    [QV_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [QV_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [QV_CHAT_CHATML] = "chatml",
    [QV_CHAT_BITNET] = "bitnet",
};

#define ALL_NAMES "llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, chatml, bitnet"

const char *qv_chat_name(qv_chat_template t)
{
    return (unsigned)t < QV_CHAT_COUNT ? NAMES[t] : NULL;
}

const char *qv_chat_names(void)
{
    return ALL_NAMES;
}

static int find_name(const char *name, qv_chat_template *out)
{
    for (int i = 0; i < QV_CHAT_COUNT; ++i)
        if (strcmp(name, NAMES[i]) == 0) {
            *out = (qv_chat_template)i;
            return 1;
        }
    return 0;
}

qv_status qv_chat_by_name(const char *name, qv_chat_template *out, qv_err *err)
{
    if (!name || !out)
        return qv_fail(err, QV_ERR_INVALID, "chat template: no name given");
    if (find_name(name, out))
        return QV_OK;
    return qv_fail(err, QV_ERR_NOT_FOUND,
                   "chat template \"%.64s\" is not one qvac knows; pass "
                   "--chat-template NAME with NAME one of: " ALL_NAMES,
                   name);
}

/* ---- detection: llama.cpp's llm_chat_detect_template ------------------ */

/* Every name in llama.cpp's LLM_CHAT_TEMPLATES map: a chat_template that is
 * exactly one of them is that template. */
static const char *const LLAMACPP_NAMES[] = {
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip",
    "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7",
    "mistral-v7-tekken", "phi3", "phi4", "falcon3", "zephyr", "monarch", "gemma",
    "orion", "openchat", "vicuna", "vicuna-orca", "deepseek", "deepseek2",
    "deepseek3", "deepseek-ocr", "command-r", "llama3", "chatglm3", "chatglm4",
    "glmedge", "minicpm", "exaone3", "exaone4", "exaone-moe", "rwkv-world",
    "granite", "granite-4.0", "granite-4.1", "gigachat", "megrez", "yandex",
    "bailing", "bailing-think", "bailing2", "llama4", "smolvlm", "hunyuan-moe",
    "gpt-oss", "hunyuan-dense", "hunyuan-vl", "kimi-k2", "seed_oss", "grok-2",
    "pangu-embedded", "solar-open",
};

static int has(const char *t, const char *s)
{
    return strstr(t, s) != NULL;
}

/* The name of the template llama.cpp detects in t, or NULL when it finds
 * none. The same tests in the same order as llm_chat_detect_template. */
static const char *llamacpp_detect(const char *t)
{
    for (size_t i = 0; i < sizeof LLAMACPP_NAMES / sizeof *LLAMACPP_NAMES; ++i)
        if (strcmp(t, LLAMACPP_NAMES[i]) == 0)
            return LLAMACPP_NAMES[i];

    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>"))
            return "phi4";
        if (has(t, "<end_of_utterance>"))
            return "smolvlm";
        return "chatml";
    }
    if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]"))
            return "mistral-v7";
        if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            if (has(t, " [INST]"))
                return "mistral-v1";
            if (has(t, "\"[INST]\""))
                return "mistral-v3-tekken";
            return "mistral-v3";
        }
        if (has(t, "content.strip()"))
            return "llama2-sys-strip";
        if (has(t, "bos_token + '[INST]"))
            return "llama2-sys-bos";
        if (has(t, "<<SYS>>"))
            return "llama2-sys";
        return "llama2";
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>"))
        return "phi3";
    if (has(t, "[gMASK]<sop>"))
        return "chatglm4";
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        if (has(t, "<|tool_declare|>"))
            return "exaone-moe";
        return has(t, "</s>") ? "falcon3" : "glmedge";
    }
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>"))
        return "glmedge";
    if (has(t, "<|user|>") && has(t, "<|endoftext|>"))
        return "zephyr";
    if (has(t, "bos_token + message['role']"))
        return "monarch";
    if (has(t, "<start_of_turn>"))
        return "gemma";
    if (has(t, "'\\n\\nAssistant: ' + eos_token"))
        return "orion";
    if (has(t, "GPT4 Correct "))
        return "openchat";
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return has(t, "SYSTEM: ") ? "vicuna-orca" : "vicuna";
    if (has(t, "### Instruction:") && has(t, "<|EOT|>"))
        return "deepseek";
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>"))
        return "command-r";
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
        return "llama3";
    if (has(t, "[gMASK]sop"))
        return "chatglm3";
    if (has(t, "<用户>"))
        return "minicpm";
    if (has(t, "'Assistant: ' + message['content'] + eos_token"))
        return "deepseek2";
    if (has(t, "<｜Assistant｜>") && has(t, "<｜User｜>") && has(t, "<｜end▁of▁sentence｜>"))
        return "deepseek3";
    if (has(t, "[|system|]") && has(t, "[|assistant|]") && has(t, "[|endofturn|]"))
        return has(t, "[|tool|]") ? "exaone4" : "exaone3";
    if (has(t, "rwkv-world") || has(t, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}"))
        return "rwkv-world";
    if (has(t, "<|start_of_role|>")) {
        if (has(t, "<tool_call>") || has(t, "<tools>"))
            return has(t, "g4_default_system_message") ? "granite-4.0" : "granite-4.1";
        return "granite";
    }
    if (has(t, "message['role'] + additional_special_tokens[0] + message['content'] + "
               "additional_special_tokens[1]"))
        return "gigachat";
    if (has(t, "<|role_start|>"))
        return "megrez";
    if (has(t, " Ассистент:"))
        return "yandex";
    if (has(t, "<role>ASSISTANT</role>") && has(t, "'HUMAN'"))
        return "bailing";
    if (has(t, "<role>ASSISTANT</role>") && has(t, "\"HUMAN\"") && has(t, "<think>"))
        return "bailing-think";
    if (has(t, "<role>ASSISTANT</role>") && has(t, "<role>HUMAN</role>") && has(t, "<|role_end|>"))
        return "bailing2";
    if (has(t, "<|header_start|>") && has(t, "<|header_end|>"))
        return "llama4";
    if (has(t, "<|endofuserprompt|>"))
        return "dots1";
    if (has(t, "<|extra_0|>") && has(t, "<|extra_4|>"))
        return "hunyuan-moe";
    if (has(t, "<|start|>") && has(t, "<|channel|>"))
        return "gpt-oss";
    if (has(t, "<｜hy_Assistant｜>") && has(t, "<｜hy_begin▁of▁sentence｜>"))
        return "hunyuan-vl";
    if (has(t, "<｜hy_Assistant｜>") && has(t, "<｜hy_place▁holder▁no▁3｜>"))
        return "hunyuan-dense";
    if (has(t, "<|im_assistant|>assistant<|im_middle|>"))
        return "kimi-k2";
    if (has(t, "<seed:bos>"))
        return "seed_oss";
    if (has(t, "'Assistant: '  + message['content'] + '<|separator|>"))
        return "grok-2";
    if (has(t, "[unused9]系统：[unused10]"))
        return "pangu-embedded";
    if (has(t, "<|begin|>") && has(t, "<|end|>") && has(t, "<|content|>"))
        return "solar-open";
    return NULL;
}

qv_status qv_chat_detect(const char *tmpl_jinja, qv_chat_template *out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "chat template detection: no output given");
    if (!tmpl_jinja || !*tmpl_jinja)
        return qv_fail(err, QV_ERR_NOT_FOUND,
                       "the model has no chat template (tokenizer.chat_template); "
                       "pass --chat-template NAME with the one it was trained on, "
                       "NAME one of: " ALL_NAMES);
    const char *lc = llamacpp_detect(tmpl_jinja);
    if (lc) {
        if (find_name(lc, out))
            return QV_OK;
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "the model's chat template is llama.cpp's \"%s\", which qvac "
                       "does not render; qvac knows " ALL_NAMES "; pass "
                       "--chat-template NAME if the model was trained on one of them",
                       lc);
    }
    /* Not llama.cpp's: BitNet b1.58 2B4T ("Role: content<|eot_id|>", with
     * 'Assistant: ' as the generation prompt), or the Human:/BITNETAssistant:
     * placeholder bitnet.cpp's converter writes into its GGUF. */
    if (strcmp(tmpl_jinja, "bitnet") == 0 ||
        (has(tmpl_jinja, "<|eot_id|>") && has(tmpl_jinja, "'Assistant: '")) ||
        has(tmpl_jinja, "BITNETAssistant")) {
        *out = QV_CHAT_BITNET;
        return QV_OK;
    }
    return qv_fail(err, QV_ERR_UNSUPPORTED,
                   "the model's chat template is not one qvac recognises (qvac "
                   "knows " ALL_NAMES ", as llama.cpp detects them); pass "
                   "--chat-template NAME with the one the model was trained on");
}

/* ---- rendering ------------------------------------------------------- */

typedef struct builder {
    char *text;
    size_t len, cap;
    qv_chat_segment *segs; /* text is set at the end; len, flags as we go */
    size_t n_segs, cap_segs;
    int oom;
} builder;

/* Appends n bytes of s as markup (special) or content, trained or not;
 * merges with the previous segment when the flags are the same. */
static void put(builder *b, const char *s, size_t n, int special, int trained)
{
    if (b->oom || n == 0)
        return;
    if (b->len > SIZE_MAX / 4 || n > SIZE_MAX / 4 - b->len) {
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *t = realloc(b->text, cap);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->text = t;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';

    qv_chat_segment *last = b->n_segs ? &b->segs[b->n_segs - 1] : NULL;
    if (last && last->special == special && last->trained == trained) {
        last->len += n;
        return;
    }
    if (b->n_segs == b->cap_segs) {
        size_t cap = b->cap_segs ? b->cap_segs * 2 : 16;
        qv_chat_segment *g = realloc(b->segs, cap * sizeof *g);
        if (!g) {
            b->oom = 1;
            return;
        }
        b->segs = g;
        b->cap_segs = cap;
    }
    b->segs[b->n_segs++] = (qv_chat_segment){NULL, n, special, trained};
}

static void mark(builder *b, const char *s, int trained)
{
    put(b, s, strlen(s), 1, trained);
}

/* ASCII whitespace, as isspace() in the C locale (llama.cpp's trim()). */
static int ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Message content, whole or trimmed of ASCII whitespace at both ends. */
static void content(builder *b, const char *s, int trim, int trained)
{
    size_t n = strlen(s);
    if (trim) {
        while (n > 0 && ws((unsigned char)s[0])) {
            ++s;
            --n;
        }
        while (n > 0 && ws((unsigned char)s[n - 1]))
            --n;
    }
    put(b, s, n, 0, trained);
}

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

static void render_llama3(builder *b, const qv_chat_msg *m, const role *r, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        int asst = r[i] == ROLE_ASSISTANT;
        mark(b, "<|start_header_id|>", 0);
        mark(b, m[i].role, 0);
        mark(b, "<|end_header_id|>\n\n", 0);
        content(b, m[i].content, 1, asst);
        mark(b, "<|eot_id|>", asst);
    }
}

static void render_chatml(builder *b, const qv_chat_msg *m, const role *r, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        int asst = r[i] == ROLE_ASSISTANT;
        mark(b, "<|im_start|>", 0);
        mark(b, m[i].role, 0);
        mark(b, "\n", 0);
        content(b, m[i].content, 0, asst);
        mark(b, "<|im_end|>", asst);
        mark(b, "\n", 0);
    }
}

static void render_llama2(builder *b, qv_chat_template t, const qv_chat_msg *m, const role *r,
                          size_t n)
{
    int system_ok = t != QV_CHAT_LLAMA2;
    int bos_in_history = t == QV_CHAT_LLAMA2_SYS_BOS;
    int strip = t == QV_CHAT_LLAMA2_SYS_STRIP;
    int inside_turn = 1; /* the first turn's BOS is the caller's */
    mark(b, "[INST] ", 0);
    for (size_t i = 0; i < n; ++i) {
        if (!inside_turn) {
            inside_turn = 1;
            mark(b, bos_in_history ? "<s>[INST] " : "[INST] ", 0);
        }
        switch (r[i]) {
        case ROLE_SYSTEM:
            if (system_ok) {
                mark(b, "<<SYS>>\n", 0);
                content(b, m[i].content, strip, 0);
                mark(b, "\n<</SYS>>\n\n", 0);
            } else {
                /* no system turn: llama.cpp puts it in the first [INST] */
                content(b, m[i].content, strip, 0);
                mark(b, "\n", 0);
            }
            break;
        case ROLE_USER:
            content(b, m[i].content, strip, 0);
            mark(b, " [/INST]", 0);
            break;
        case ROLE_ASSISTANT:
            content(b, m[i].content, strip, 1);
            mark(b, "</s>", 1);
            inside_turn = 0;
            break;
        }
    }
}

static void render_bitnet(builder *b, const qv_chat_msg *m, const role *r, size_t n)
{
    static const char *const PREFIX[] = {"System: ", "User: ", "Assistant: "};
    for (size_t i = 0; i < n; ++i) {
        int asst = r[i] == ROLE_ASSISTANT;
        mark(b, PREFIX[r[i]], 0);
        content(b, m[i].content, 1, asst);
        mark(b, "<|eot_id|>", asst);
    }
}

void qv_chat_rendered_free(qv_chat_rendered *r)
{
    if (!r)
        return;
    free(r->text);
    free(r->segs);
    *r = (qv_chat_rendered){0};
}

qv_status qv_chat_render(qv_chat_template tmpl, const qv_chat_msg *msgs, size_t n,
                         qv_chat_rendered *out, qv_err *err)
{
    if (!out)
        return qv_fail(err, QV_ERR_INVALID, "chat render: no output given");
    *out = (qv_chat_rendered){0};
    if ((unsigned)tmpl >= QV_CHAT_COUNT)
        return qv_fail(err, QV_ERR_INVALID, "chat render: template %d is out of range",
                       (int)tmpl);
    if (n == 0 || !msgs)
        return qv_fail(err, QV_ERR_INVALID,
                       "chat render (%s): no messages; a conversation needs at least one",
                       NAMES[tmpl]);

    role *roles = malloc(n * sizeof *roles);
    if (!roles)
        return qv_fail(err, QV_ERR_NOMEM, "chat render (%s): out of memory for %zu messages",
                       NAMES[tmpl], n);
    for (size_t i = 0; i < n; ++i) {
        const char *ro = msgs[i].role;
        if (!ro || !msgs[i].content) {
            free(roles);
            return qv_fail(err, QV_ERR_INVALID, "chat message %zu of %zu: no %s", i + 1, n,
                           ro ? "content" : "role");
        }
        if (strcmp(ro, "system") == 0)
            roles[i] = ROLE_SYSTEM;
        else if (strcmp(ro, "user") == 0)
            roles[i] = ROLE_USER;
        else if (strcmp(ro, "assistant") == 0)
            roles[i] = ROLE_ASSISTANT;
        else {
            free(roles);
            return qv_fail(err, QV_ERR_INVALID,
                           "chat message %zu of %zu: unknown role \"%.64s\"; the roles are "
                           "system, user and assistant",
                           i + 1, n, ro);
        }
    }

    builder b = {0};
    switch (tmpl) {
    case QV_CHAT_LLAMA3:
        render_llama3(&b, msgs, roles, n);
        break;
    case QV_CHAT_LLAMA2:
    case QV_CHAT_LLAMA2_SYS:
    case QV_CHAT_LLAMA2_SYS_BOS:
    case QV_CHAT_LLAMA2_SYS_STRIP:
        render_llama2(&b, tmpl, msgs, roles, n);
        break;
    case QV_CHAT_CHATML:
        render_chatml(&b, msgs, roles, n);
        break;
    case QV_CHAT_BITNET:
        render_bitnet(&b, msgs, roles, n);
        break;
    case QV_CHAT_COUNT:
        break;
    }
    free(roles);
    if (!b.oom && !b.text) { /* every message empty and no markup: cannot happen
                                for these templates, but keep text a string */
        b.text = calloc(1, 1);
        b.oom = !b.text;
    }
    if (b.oom) {
        free(b.text);
        free(b.segs);
        return qv_fail(err, QV_ERR_NOMEM, "chat render (%s): out of memory for %zu messages",
                       NAMES[tmpl], n);
    }
    size_t at = 0;
    for (size_t i = 0; i < b.n_segs; ++i) {
        b.segs[i].text = b.text + at;
        at += b.segs[i].len;
    }
    out->text = b.text;
    out->len = b.len;
    out->segs = b.segs;
    out->n_segs = b.n_segs;
    return QV_OK;
}

const char *qv_chat_generation_prompt(qv_chat_template t)
{
    switch (t) {
    case QV_CHAT_LLAMA3:
        return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case QV_CHAT_LLAMA2:
    case QV_CHAT_LLAMA2_SYS:
    case QV_CHAT_LLAMA2_SYS_BOS:
    case QV_CHAT_LLAMA2_SYS_STRIP:
        return "";
    case QV_CHAT_CHATML:
        return "<|im_start|>assistant\n";
    case QV_CHAT_BITNET:
        return "Assistant: ";
    case QV_CHAT_COUNT:
        break;
    }
    return NULL;
}
