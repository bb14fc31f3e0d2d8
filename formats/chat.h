/* formats/chat.h — chat templates: a conversation (system / user /
 * assistant messages) rendered to the text a chat model was trained on,
 * cut into segments that say how to tokenise each piece and which bytes
 * carry the training loss.
 *
 * The truth is llama.cpp (commit d32676d): the text of every template but
 * bitnet is exactly what src/llama-chat.cpp's llm_chat_apply_template
 * produces with add_ass = false, and qv_chat_detect makes the decision of
 * its llm_chat_detect_template. tests/test_chat.c compares byte for byte
 * with strings printed by llama.cpp's own code. This is not a Jinja engine:
 * like llama.cpp's built-in path, a GGUF's tokenizer.chat_template is only
 * matched against known patterns.
 *
 * Templates (names as llama.cpp's --chat-template spells them). M is a
 * message's content, T(M) the content trimmed of ASCII whitespace
 * (space, \t, \n, \v, \f, \r) at both ends, as llama.cpp's trim():
 *
 *   llama3            "<|start_header_id|>" role "<|end_header_id|>\n\n" T(M) "<|eot_id|>"
 *                     per message.
 *   chatml            "<|im_start|>" role "\n" M "<|im_end|>" "\n" per message.
 *   llama2            LLaMA-2 [INST] format, four variants as in llama.cpp.
 *   llama2-sys        The text opens with "[INST] "; a user message is
 *   llama2-sys-bos    M " [/INST]", an assistant message M "</s>", after
 *   llama2-sys-strip  which the next message opens a new "[INST] ". A system
 *                     message is "<<SYS>>\n" M "\n<</SYS>>\n\n", except in
 *                     llama2 (no system support: M "\n"). llama2-sys-bos
 *                     opens later turns with "<s>[INST] "; llama2-sys-strip
 *                     uses T(M) for every message. The real LLaMA-2-chat
 *                     template (meta-llama/Llama-2-7b-chat-hf) contains
 *                     "content.strip()", so llama.cpp — and qv_chat_detect —
 *                     read it as llama2-sys-strip: that is the LLaMA-2-chat
 *                     one. Note llama.cpp's text differs from that Jinja
 *                     template (no spaces around the answer, no "<s>"
 *                     between turns); qvac follows llama.cpp.
 *   bitnet            Role ": " T(M) "<|eot_id|>" per message, Role being
 *                     "System", "User" or "Assistant": BitNet b1.58 2B4T
 *                     (microsoft/bitnet-b1.58-2B-4T), whose tokenizer_config
 *                     .json template is
 *                       {% set loop_messages = messages %}{% for message in
 *                       loop_messages %}{% set content = message['role'] |
 *                       capitalize + ': '+ message['content'] | trim +
 *                       '<|eot_id|>' %}{{ content }}{% endfor %}{% if
 *                       add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}
 *                     llama.cpp d32676d has no built-in for it; the text is
 *                     what llama.cpp's own Jinja engine (common/jinja, its
 *                     --jinja path) renders from that template, and the
 *                     tests compare with that. (ik_llama.cpp's built-in
 *                     "bitnet", ported from bitnet.cpp's llama.cpp fork,
 *                     writes no <|eot_id|> after system and assistant
 *                     turns, so a model trained on it would never learn to
 *                     stop; qvac does not follow it.)
 *
 * Segments. The rendered text is a list of segments, back to back:
 *   special = 1: template markup ("<|start_header_id|>user<|end_header_id|>
 *     \n\n", "<|eot_id|>", "[INST] ", "</s>", "User: " ...). Tokenise with
 *     special-token parsing, so "<|eot_id|>" becomes its one token.
 *   special = 0: message content, the user's text. NEVER parse it for
 *     special tokens: a message that says "<|eot_id|>" is those 10 bytes
 *     as text, so data cannot forge turn boundaries. (llama.cpp tokenises
 *     its whole prompt with special parsing; this is the one place qvac
 *     deliberately tokenises differently, and only when content contains
 *     special-token text.)
 *   trained = 1: the loss mask. Exactly these bytes are trained, per
 *     template, and nothing else (not system or user turns, not the role
 *     headers, not the markup that opens a turn):
 *       llama3            every assistant T(M) and the "<|eot_id|>" after it
 *       chatml            every assistant M and the "<|im_end|>" after it
 *                         (not the "\n" that follows: generation stops at
 *                         <|im_end|>)
 *       llama2 (all four) every assistant M (T(M) for -strip) and the "</s>"
 *                         after it
 *       bitnet            every assistant T(M) and the "<|eot_id|>" after it
 *     so the model learns the answers and to end its turn.
 * Segments are never empty and two neighbours always differ in special or
 * trained (pieces with the same flags are merged). A token that straddles
 * two segments should count as trained when any of its bytes is, so every
 * trained byte is predicted.
 *
 * BOS. The text never contains the BOS token (llama3's <|begin_of_text|>,
 * llama2's leading <s>), as llama.cpp's llm_chat_apply_template output does
 * not: the caller puts BOS first when the vocabulary's add_bos flag
 * (tokenizer.ggml.add_bos_token) says so, as llama.cpp's tokenizer does.
 * (llama.cpp's Jinja path strips a leading BOS the template writes when
 * add_bos is set, for the same result.) Text-level "<s>" inside the history
 * (llama2-sys-bos) is markup, not the BOS the caller adds. No EOS is added
 * either; the end-of-turn markup above is in the text. */
#ifndef QV_FORMATS_CHAT_H
#define QV_FORMATS_CHAT_H

#include <stddef.h>

#include "common/status.h"

typedef enum qv_chat_template {
    QV_CHAT_LLAMA3 = 0,
    QV_CHAT_LLAMA2,
    QV_CHAT_LLAMA2_SYS,
    QV_CHAT_LLAMA2_SYS_BOS,
    QV_CHAT_LLAMA2_SYS_STRIP,
    QV_CHAT_CHATML,
    QV_CHAT_BITNET,
    QV_CHAT_COUNT
} qv_chat_template;

/* The template's name ("llama3", "llama2-sys-strip", "bitnet" ...), or
 * NULL for a value out of range. */
const char *qv_chat_name(qv_chat_template t);

/* All names, comma separated, for help texts and messages:
 * "llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, chatml,
 * bitnet". */
const char *qv_chat_names(void);

/* --chat-template NAME. Exact, case-sensitive names. Errors:
 * QV_ERR_NOT_FOUND (unknown name: the message lists the names),
 * QV_ERR_INVALID (NULL). */
qv_status qv_chat_by_name(const char *name, qv_chat_template *out, qv_err *err);

/* The template of a GGUF's tokenizer.chat_template (Jinja source), decided
 * as llama.cpp's llm_chat_detect_template decides: a string that is a
 * llama.cpp template name is that template; otherwise llama.cpp's substring
 * rules in llama.cpp's order, so a template llama.cpp reads as another one
 * (phi4 has <|im_start|> too, zephyr, mistral-v7 ...) is refused rather
 * than mistaken for ours. Only when llama.cpp would find nothing does
 * qvac's own rule run: bitnet when the text contains "<|eot_id|>" and
 * "'Assistant: '" (BitNet b1.58 2B4T's tokenizer_config.json template), or
 * "BITNETAssistant" (the placeholder that bitnet.cpp's converter writes
 * into the official GGUF; the model was trained on the former, so both
 * render as bitnet), or the text is "bitnet". Errors: QV_ERR_UNSUPPORTED
 * (not one qvac renders: the message says what llama.cpp calls it, if
 * anything, lists the names and says to pass --chat-template NAME),
 * QV_ERR_NOT_FOUND (NULL or empty: the model has no chat template; same
 * remedy), QV_ERR_INVALID (out is NULL). */
qv_status qv_chat_detect(const char *tmpl_jinja, qv_chat_template *out, qv_err *err);

/* One message. role is "system", "user" or "assistant" (exactly); content
 * is NUL-terminated UTF-8 (not checked: bytes pass through). */
typedef struct qv_chat_msg {
    const char *role;
    const char *content;
} qv_chat_msg;

typedef struct qv_chat_segment {
    const char *text; /* points into the qv_chat_rendered's text */
    size_t len;       /* bytes, > 0 */
    int special;      /* 1: markup, tokenise with special-token parsing;
                         0: content, never parsed for special tokens */
    int trained;      /* 1: these bytes carry the loss */
} qv_chat_segment;

typedef struct qv_chat_rendered {
    char *text;            /* all segments back to back, NUL-terminated */
    size_t len;            /* bytes of text, without the NUL */
    qv_chat_segment *segs; /* n_segs segments covering text[0..len) in order */
    size_t n_segs;
} qv_chat_rendered;

/* Renders n messages with template tmpl into *out (overwritten; free with
 * qv_chat_rendered_free). The concatenated text is llama.cpp's
 * llm_chat_apply_template(tmpl, msgs, add_ass = false) (for bitnet: the
 * Jinja render above with add_generation_prompt false). Errors:
 * QV_ERR_INVALID (n == 0, a NULL role or content, an unknown role: the
 * message names it and its index; tmpl out of range; NULL pointers),
 * QV_ERR_NOMEM. On error *out is empty ({0}) and owns nothing. */
qv_status qv_chat_render(qv_chat_template tmpl, const qv_chat_msg *msgs, size_t n,
                         qv_chat_rendered *out, qv_err *err);

/* Frees what r owns and zeroes it. Safe on NULL and on a zeroed struct. */
void qv_chat_rendered_free(qv_chat_rendered *r);

/* The markup llama.cpp appends for add_ass = true, which asks the model
 * for the assistant's turn at generation time (markup: tokenise with
 * special parsing):
 *   llama3   "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *   chatml   "<|im_start|>assistant\n"
 *   llama2*  "" (the text already ends in " [/INST]")
 *   bitnet   "Assistant: "
 * NULL for a value out of range. */
const char *qv_chat_generation_prompt(qv_chat_template t);

#endif
