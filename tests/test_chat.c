/* tests/test_chat.c — chat templates (formats/chat.c).
 *
 * The expected texts are not ours: EXPECTED and EXPECTED_GEN were printed
 * by llama.cpp's own code at commit d32676d — src/llama-chat.cpp's
 * llm_chat_apply_template (add_ass = false; EXPECTED_GEN add_ass = true)
 * for llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip and
 * chatml, and for bitnet llama.cpp's Jinja engine (common/jinja, the
 * engine of its --jinja path) rendering BitNet b1.58 2B4T's template
 * BITNET_2B4T with bos_token "" — by a small C++ program built in /tmp
 * against those sources, outside this project. The template strings are
 * real models' tokenizer.chat_template (sources above each); the detection
 * each gets is what llama.cpp's llm_chat_detect_template returns for it,
 * printed by the same program (for the BitNet ones llama.cpp finds none,
 * and qvac's own rule applies). The segment flags (content vs markup,
 * trained bytes) are written out by hand from the rules in chat.h. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/chat.h"

/* ---- the conversations ---------------------------------------------- */

/* 0: llama.cpp's own test conversation (tests/test-chat-template.cpp). */
static const qv_chat_msg CONV0[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
/* 1: content that looks like markup, whitespace at both ends, no system. */
static const qv_chat_msg CONV1[] = {
    {"user", "  What is <|eot_id|> in\tLLaMA-3?\n"},
    {"assistant", "\nIt ends a turn: <|im_end|> [INST] </s><s>\n\n"},
};
/* 2: UTF-8, CRLF, \v, an empty user message, ending with the assistant. */
static const qv_chat_msg CONV2[] = {
    {"system", "  R\303\251ponds en fran\303\247ais.  "},
    {"user", "Bonjour \346\227\245\346\234\254\r\n"},
    {"assistant", "Salut !"},
    {"user", ""},
    {"assistant", " Au revoir.\v"},
};
static const struct {
    const qv_chat_msg *msgs;
    size_t n;
} CONVS[3] = {{CONV0, 6}, {CONV1, 2}, {CONV2, 5}};

/* ---- llama.cpp d32676d's output (see the file comment) --------------- */

/* EXPECTED[template][conversation], add_ass = false */
static const char *const EXPECTED[QV_CHAT_COUNT][3] = {
    [QV_CHAT_LLAMA3] = {
        "<|start_header_id|>system<|end_header_id|>\n\nYou "
        "are a helpful assistant<|eot_id|><|start_header_id|>"
        "user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
        "assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho "
        "are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        "\n\nI am an assistant<|eot_id|><|start_header_id|>"
        "user<|end_header_id|>\n\nAnother question<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nWhat "
        "is <|eot_id|> in\tLLaMA-3?<|eot_id|><|start_header_id|>"
        "assistant<|end_header_id|>\n\nIt ends a turn: <|im_end|>"
        " [INST] </s><s><|eot_id|>",
        "<|start_header_id|>system<|end_header_id|>\n\nR\303\251ponds "
        "en fran\303\247ais.<|eot_id|><|start_header_id|>"
        "user<|end_header_id|>\n\nBonjour \346\227\245\346\234\254<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "Salut !<|eot_id|><|start_header_id|>user<|end_header_id|>"
        "\n\n<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        "\n\nAu revoir.<|eot_id|>",
    },
    [QV_CHAT_LLAMA2] = {
        "[INST] You are a helpful assistant\nHello [/INST]Hi "
        "there</s>[INST] Who are you [/INST]   I am an assistant "
        "  </s>[INST] Another question [/INST]",
        "[INST]   What is <|eot_id|> in\tLLaMA-3?\n [/INST]\n"
        "It ends a turn: <|im_end|> [INST] </s><s>\n\n</s>",
        "[INST]   R\303\251ponds en fran\303\247ais.  \nBonjour "
        "\346\227\245\346\234\254\r\n [/INST]Salut !</s>[INST] "
        " [/INST] Au revoir.\v</s>",
    },
    [QV_CHAT_LLAMA2_SYS] = {
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s>[INST] Who are you "
        "[/INST]   I am an assistant   </s>[INST] Another "
        "question [/INST]",
        "[INST]   What is <|eot_id|> in\tLLaMA-3?\n [/INST]\n"
        "It ends a turn: <|im_end|> [INST] </s><s>\n\n</s>",
        "[INST] <<SYS>>\n  R\303\251ponds en fran\303\247ais. "
        " \n<</SYS>>\n\nBonjour \346\227\245\346\234\254\r\n"
        " [/INST]Salut !</s>[INST]  [/INST] Au revoir.\v</s>",
    },
    [QV_CHAT_LLAMA2_SYS_BOS] = {
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s><s>[INST] Who are "
        "you [/INST]   I am an assistant   </s><s>[INST] "
        "Another question [/INST]",
        "[INST]   What is <|eot_id|> in\tLLaMA-3?\n [/INST]\n"
        "It ends a turn: <|im_end|> [INST] </s><s>\n\n</s>",
        "[INST] <<SYS>>\n  R\303\251ponds en fran\303\247ais. "
        " \n<</SYS>>\n\nBonjour \346\227\245\346\234\254\r\n"
        " [/INST]Salut !</s><s>[INST]  [/INST] Au revoir.\v</s>",
    },
    [QV_CHAT_LLAMA2_SYS_STRIP] = {
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s>[INST] Who are you "
        "[/INST]I am an assistant</s>[INST] Another question "
        "[/INST]",
        "[INST] What is <|eot_id|> in\tLLaMA-3? [/INST]It "
        "ends a turn: <|im_end|> [INST] </s><s></s>",
        "[INST] <<SYS>>\nR\303\251ponds en fran\303\247ais.\n"
        "<</SYS>>\n\nBonjour \346\227\245\346\234\254 [/INST]Salut "
        "!</s>[INST]  [/INST]Au revoir.</s>",
    },
    [QV_CHAT_CHATML] = {
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>"
        "\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>"
        "assistant\nHi there<|im_end|>\n<|im_start|>user\n"
        "Who are you<|im_end|>\n<|im_start|>assistant\n  "
        " I am an assistant   <|im_end|>\n<|im_start|>user\n"
        "Another question<|im_end|>\n",
        "<|im_start|>user\n  What is <|eot_id|> in\tLLaMA-3?\n"
        "<|im_end|>\n<|im_start|>assistant\n\nIt ends a turn: "
        "<|im_end|> [INST] </s><s>\n\n<|im_end|>\n",
        "<|im_start|>system\n  R\303\251ponds en fran\303\247ais. "
        " <|im_end|>\n<|im_start|>user\nBonjour \346\227\245\346\234\254\r\n"
        "<|im_end|>\n<|im_start|>assistant\nSalut !<|im_end|>"
        "\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
        " Au revoir.\v<|im_end|>\n",
    },
    [QV_CHAT_BITNET] = {
        "System: You are a helpful assistant<|eot_id|>User: "
        "Hello<|eot_id|>Assistant: Hi there<|eot_id|>User: "
        "Who are you<|eot_id|>Assistant: I am an assistant<|eot_id|>"
        "User: Another question<|eot_id|>",
        "User: What is <|eot_id|> in\tLLaMA-3?<|eot_id|>Assistant: "
        "It ends a turn: <|im_end|> [INST] </s><s><|eot_id|>",
        "System: R\303\251ponds en fran\303\247ais.<|eot_id|>"
        "User: Bonjour \346\227\245\346\234\254<|eot_id|>"
        "Assistant: Salut !<|eot_id|>User: <|eot_id|>Assistant: "
        "Au revoir.<|eot_id|>",
    },
};

/* conversation 0 with add_ass = true (bitnet: add_generation_prompt) */
static const char *const EXPECTED_GEN[QV_CHAT_COUNT] = {
    [QV_CHAT_LLAMA3] =
        "<|start_header_id|>system<|end_header_id|>\n\nYou "
        "are a helpful assistant<|eot_id|><|start_header_id|>"
        "user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
        "assistant<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho "
        "are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
        "\n\nI am an assistant<|eot_id|><|start_header_id|>"
        "user<|end_header_id|>\n\nAnother question<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    [QV_CHAT_LLAMA2] =
        "[INST] You are a helpful assistant\nHello [/INST]Hi "
        "there</s>[INST] Who are you [/INST]   I am an assistant "
        "  </s>[INST] Another question [/INST]",
    [QV_CHAT_LLAMA2_SYS] =
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s>[INST] Who are you "
        "[/INST]   I am an assistant   </s>[INST] Another "
        "question [/INST]",
    [QV_CHAT_LLAMA2_SYS_BOS] =
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s><s>[INST] Who are "
        "you [/INST]   I am an assistant   </s><s>[INST] "
        "Another question [/INST]",
    [QV_CHAT_LLAMA2_SYS_STRIP] =
        "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>"
        ">\n\nHello [/INST]Hi there</s>[INST] Who are you "
        "[/INST]I am an assistant</s>[INST] Another question "
        "[/INST]",
    [QV_CHAT_CHATML] =
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>"
        "\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>"
        "assistant\nHi there<|im_end|>\n<|im_start|>user\n"
        "Who are you<|im_end|>\n<|im_start|>assistant\n  "
        " I am an assistant   <|im_end|>\n<|im_start|>user\n"
        "Another question<|im_end|>\n<|im_start|>assistant\n",
    [QV_CHAT_BITNET] =
        "System: You are a helpful assistant<|eot_id|>User: "
        "Hello<|eot_id|>Assistant: Hi there<|eot_id|>User: "
        "Who are you<|eot_id|>Assistant: I am an assistant<|eot_id|>"
        "User: Another question<|eot_id|>Assistant: ",
};

/* meta-llama/Meta-Llama-3-8B-Instruct, tokenizer_config.json; llama.cpp
 * detects llama3 */
static const char LLAMA3_8B_INSTRUCT[] =
    "{% set loop_messages = messages %}{% for message "
    "in loop_messages %}{% set content = '<|start_header_id|>"
    "' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
    "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif "
    "%}{{ content }}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|start_header_id|>assistant<|end_header_id|>"
    "\n\n' }}{% endif %}";

/* Llama-3.1-8B-Instruct, llama.cpp's
 * models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja; llama.cpp
 * detects llama3 */
static const char LLAMA31_8B_INSTRUCT[] =
    "{{- bos_token }}\n{%- if custom_tools is defined "
    "%}\n    {%- set tools = custom_tools %}\n{%- endif "
    "%}\n{%- if not tools_in_user_message is defined "
    "%}\n    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n{%- if not date_string is defined "
    "%}\n    {%- set date_string = \"26 Jul 2024\" %}"
    "\n{%- endif %}\n{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n{%- endif %}\n\n{#- "
    "This block extracts the system message, so we can "
    "slot it into the right place. #}\n{%- if messages[0]['role'] "
    "== 'system' %}\n    {%- set system_message = messages[0]['content']|trim"
    " %}\n    {%- set messages = messages[1:] %}\n{%- "
    "else %}\n    {%- set system_message = \"\" %}\n{%- "
    "endif %}\n\n{#- System message + builtin tools #}"
    "\n{{- \"<|start_header_id|>system<|end_header_id|>"
    "\\n\\n\" }}\n{%- if builtin_tools is defined or "
    "tools is not none %}\n    {{- \"Environment: ipython\\n\" "
    "}}\n{%- endif %}\n{%- if builtin_tools is defined "
    "%}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', "
    "'code_interpreter') | join(\", \") + \"\\n\\n\"}"
    "}\n{%- endif %}\n{{- \"Cutting Knowledge Date: December "
    "2023\\n\" }}\n{{- \"Today Date: \" + date_string "
    "+ \"\\n\\n\" }}\n{%- if tools is not none and not "
    "tools_in_user_message %}\n    {{- \"You have access "
    "to the following functions. To call a function, "
    "please respond with JSON for a function call.\" "
    "}}\n    {{- 'Respond in the format {\"name\": function "
    "name, \"parameters\": dictionary of argument name "
    "and its value}.' }}\n    {{- \"Do not use variables.\\n\\n\" "
    "}}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) "
    "}}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}"
    "\n{%- endif %}\n{{- system_message }}\n{{- \"<|eot_id|>"
    "\" }}\n\n{#- Custom tools are passed in a user message "
    "with some extra guidance #}\n{%- if tools_in_user_message "
    "and not tools is none %}\n    {#- Extract the first "
    "user message so we can plug it in here #}\n    {%- "
    "if messages | length != 0 %}\n        {%- set first_user_message "
    "= messages[0]['content']|trim %}\n        {%- set "
    "messages = messages[1:] %}\n    {%- else %}\n   "
    "     {{- raise_exception(\"Cannot put tools in the "
    "first user message when there's no first user message!\") "
    "}}\n{%- endif %}\n    {{- '<|start_header_id|>user<|end_header_id|>"
    "\\n\\n' -}}\n    {{- \"Given the following functions, "
    "please respond with a JSON for a function call \" "
    "}}\n    {{- \"with its proper arguments that best "
    "answers the given prompt.\\n\\n\" }}\n    {{- 'Respond "
    "in the format {\"name\": function name, \"parameters\": "
    "dictionary of argument name and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n    "
    "{%- for t in tools %}\n        {{- t | tojson(indent=4) "
    "}}\n        {{- \"\\n\\n\" }}\n    {%- endfor %}"
    "\n    {{- first_user_message + \"<|eot_id|>\"}}\n"
    "{%- endif %}\n\n{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role "
    "== 'tool' or 'tool_calls' in message) %}\n      "
    "  {{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' }}\n    {%- elif 'tool_calls' "
    "in message %}\n        {%- if not message.tool_calls|length "
    "== 1 %}\n            {{- raise_exception(\"This "
    "model only supports single tool-calls at once!\") "
    "}}\n        {%- endif %}\n        {%- set tool_call "
    "= message.tool_calls[0].function %}\n        {%- "
    "if builtin_tools is defined and tool_call.name in "
    "builtin_tools %}\n            {{- '<|start_header_id|>"
    "assistant<|end_header_id|>\\n\\n' -}}\n         "
    "   {{- \"<|python_tag|>\" + tool_call.name + \".call(\" "
    "}}\n            {%- for arg_name, arg_val in tool_call.arguments "
    "| items %}\n                {{- arg_name + '=\"' "
    "+ arg_val + '\"' }}\n                {%- if not "
    "loop.last %}\n                    {{- \", \" }}\n"
    "                {%- endif %}\n                {%- "
    "endfor %}\n            {{- \")\" }}\n        {%- "
    "else  %}\n            {{- '<|start_header_id|>assistant<|end_header_id|>"
    "\\n\\n' -}}\n            {{- '{\"name\": \"' + tool_call.name "
    "+ '\", ' }}\n            {{- '\"parameters\": ' "
    "}}\n            {{- tool_call.arguments | tojson "
    "}}\n            {{- \"}\" }}\n        {%- endif "
    "%}\n        {%- if builtin_tools is defined %}\n"
    "            {#- This means we're in ipython mode "
    "#}\n            {{- \"<|eom_id|>\" }}\n        {%- "
    "else %}\n            {{- \"<|eot_id|>\" }}\n    "
    "    {%- endif %}\n    {%- elif message.role == \"tool\" "
    "or message.role == \"ipython\" %}\n        {{- \"<|start_header_id|>"
    "ipython<|end_header_id|>\\n\\n\" }}\n        {%- "
    "if message.content is mapping or message.content "
    "is iterable %}\n            {{- message.content "
    "| tojson }}\n        {%- else %}\n            {{- "
    "message.content }}\n        {%- endif %}\n      "
    "  {{- \"<|eot_id|>\" }}\n    {%- endif %}\n{%- endfor "
    "%}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>"
    "assistant<|end_header_id|>\\n\\n' }}\n{%- endif "
    "%}\n";

/* meta-llama/Llama-2-7b-chat-hf, tokenizer_config.json; llama.cpp detects
 * llama2-sys-strip (it contains "content.strip()") */
static const char LLAMA2_7B_CHAT[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages "
    "= messages[1:] %}{% set system_message = messages[0]['content'] "
    "%}{% else %}{% set loop_messages = messages %}{% "
    "set system_message = false %}{% endif %}{% for message "
    "in loop_messages %}{% if (message['role'] == 'user') "
    "!= (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') "
    "}}{% endif %}{% if loop.index0 == 0 and system_message "
    "!= false %}{% set content = '<<SYS>>\\n' + system_message "
    "+ '\\n<</SYS>>\\n\\n' + message['content'] %}{% "
    "else %}{% set content = message['content'] %}{% "
    "endif %}{% if message['role'] == 'user' %}{{ bos_token "
    "+ '[INST] ' + content.strip() + ' [/INST]' }}{% "
    "elif message['role'] == 'assistant' %}{{ ' '  + "
    "content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

/* mistralai/Mistral-7B-Instruct-v0.2, from llama.cpp's
 * tests/test-chat-template.cpp; llama.cpp detects llama2 */
static const char MISTRAL_7B_V02[] =
    "{{ bos_token }}{% for message in messages %}{% if "
    "(message['role'] == 'user') != (loop.index0 % 2 "
    "== 0) %}{{ raise_exception('Conversation roles must "
    "alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ "
    "'[INST] ' + message['content'] + ' [/INST]' }}{% "
    "elif message['role'] == 'assistant' %}{{ message['content'] "
    "+ eos_token}}{% else %}{{ raise_exception('Only "
    "user and assistant roles are supported!') }}{% endif "
    "%}{% endfor %}";

/* teknium/OpenHermes-2.5-Mistral-7B, from llama.cpp's
 * tests/test-chat-template.cpp; llama.cpp detects chatml */
static const char OPENHERMES_25[] =
    "{% for message in messages %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>"
    "' + '\\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Qwen2.5-7B-Instruct, llama.cpp's
 * models/templates/Qwen-Qwen2.5-7B-Instruct.jinja; llama.cpp detects chatml */
static const char QWEN25_7B_INSTRUCT[] =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' "
    "}}\n    {%- if messages[0]['role'] == 'system' %}"
    "\n        {{- messages[0]['content'] }}\n    {%- "
    "else %}\n        {{- 'You are Qwen, created by Alibaba "
    "Cloud. You are a helpful assistant.' }}\n    {%- "
    "endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call "
    "one or more functions to assist with the user query.\\n\\nYou "
    "are provided with function signatures within <tools>"
    "</tools> XML tags:\\n<tools>\" }}\n    {%- for tool "
    "in tools %}\n        {{- \"\\n\" }}\n        {{- "
    "tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>"
    "\\n\\nFor each function call, return a json object "
    "with function name and arguments within <tool_call>"
    "</tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": "
    "<function-name>, \\\"arguments\\\": <args-json-object>"
    "}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n "
    "       {{- '<|im_start|>system\\n' + messages[0]['content'] "
    "+ '<|im_end|>\\n' }}\n    {%- else %}\n        {{- "
    "'<|im_start|>system\\nYou are Qwen, created by Alibaba "
    "Cloud. You are a helpful assistant.<|im_end|>\\n' "
    "}}\n    {%- endif %}\n{%- endif %}\n{%- for message "
    "in messages %}\n    {%- if (message.role == \"user\") "
    "or (message.role == \"system\" and not loop.first) "
    "or (message.role == \"assistant\" and not message.tool_calls) "
    "%}\n        {{- '<|im_start|>' + message.role + "
    "'\\n' + message.content + '<|im_end|>' + '\\n' }"
    "}\n    {%- elif message.role == \"assistant\" %}"
    "\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- "
    "'\\n' + message.content }}\n        {%- endif %}"
    "\n        {%- for tool_call in message.tool_calls "
    "%}\n            {%- if tool_call.function is defined "
    "%}\n                {%- set tool_call = tool_call.function "
    "%}\n            {%- endif %}\n            {{- '\\n<tool_call>"
    "\\n{\"name\": \"' }}\n            {{- tool_call.name "
    "}}\n            {{- '\", \"arguments\": ' }}\n  "
    "          {{- tool_call.arguments | tojson }}\n "
    "           {{- '}\\n</tool_call>' }}\n        {%- "
    "endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- "
    "elif message.role == \"tool\" %}\n        {%- if "
    "(loop.index0 == 0) or (messages[loop.index0 - 1].role "
    "!= \"tool\") %}\n            {{- '<|im_start|>user' "
    "}}\n        {%- endif %}\n        {{- '\\n<tool_response>"
    "\\n' }}\n        {{- message.content }}\n       "
    " {{- '\\n</tool_response>' }}\n        {%- if loop.last "
    "or (messages[loop.index0 + 1].role != \"tool\") "
    "%}\n            {{- '<|im_end|>\\n' }}\n        "
    "{%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- "
    "if add_generation_prompt %}\n    {{- '<|im_start|>"
    "assistant\\n' }}\n{%- endif %}\n";

/* microsoft/bitnet-b1.58-2B-4T, tokenizer_config.json; llama.cpp detects
 * nothing (qvac: bitnet). EXPECTED[QV_CHAT_BITNET] is llama.cpp's Jinja
 * render of this string. */
static const char BITNET_2B4T[] =
    "{% set loop_messages = messages %}{% for message "
    "in loop_messages %}{% set content = message['role'] "
    "| capitalize + ': '+ message['content'] | trim + "
    "'<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt "
    "%}{{ 'Assistant: ' }}{% endif %}";

/* The placeholder microsoft/BitNet's utils/convert-ms-to-gguf-bitnet.py
 * (commit 16da220) writes into the official GGUF; llama.cpp detects
 * nothing (qvac: bitnet). */
static const char BITNET_2B4T_GGUF[] =
    "{% for message in messages %}{% if loop.first %}"
    "{{ bos_token }}{% endif %}{% if message['role'] "
    "== 'user' %}{{ 'Human: ' + message['content'] + "
    "'\\n\\nBITNETAssistant: ' + eos_token }}{% elif "
    "message['role'] == 'assistant' %}{{ message['content'] "
    "+ eos_token }}{% endif %}{% endfor %}";

/* Phi-3.5-mini-instruct, llama.cpp's
 * models/templates/microsoft-Phi-3.5-mini-instruct.jinja; llama.cpp detects
 * phi3 */
static const char PHI35_MINI[] =
    "{% for message in messages %}{% if message['role'] "
    "== 'system' and message['content'] %}{{'<|system|>"
    "\n' + message['content'] + '<|end|>\n'}}{% elif "
    "message['role'] == 'user' %}{{'<|user|>\n' + message['content'] "
    "+ '<|end|>\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\n' + message['content'] + '<|end|>"
    "\n'}}{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|assistant|>\n' }}{% else %}{{ eos_token "
    "}}{% endif %}";


/* ---- helpers -------------------------------------------------------- */

static qv_chat_rendered render_ok(qv_chat_template t, const qv_chat_msg *m, size_t n)
{
    qv_chat_rendered r;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_render(t, m, n, &r, &e), QV_OK, "%s: %s", qv_chat_name(t), e.msg);
    return r;
}

/* The segments are non-empty, back to back over text[0..len), flags 0/1,
 * and two neighbours never have the same flags. */
static void check_segments(const qv_chat_rendered *r, const char *what)
{
    cr_assert_not_null(r->text, "%s", what);
    cr_assert_eq(r->text[r->len], '\0', "%s: text not NUL-terminated", what);
    cr_assert_eq(strlen(r->text), r->len, "%s", what);
    size_t at = 0;
    for (size_t i = 0; i < r->n_segs; ++i) {
        const qv_chat_segment *s = &r->segs[i];
        cr_assert_gt(s->len, 0, "%s: segment %zu is empty", what, i);
        cr_assert_eq(s->text, r->text + at, "%s: segment %zu is not where %zu ends", what, i,
                     i ? i - 1 : 0);
        cr_assert(s->special == 0 || s->special == 1, "%s: segment %zu", what, i);
        cr_assert(s->trained == 0 || s->trained == 1, "%s: segment %zu", what, i);
        if (i > 0)
            cr_assert(s->special != s[-1].special || s->trained != s[-1].trained,
                      "%s: segments %zu and %zu have the same flags", what, i - 1, i);
        at += s->len;
    }
    cr_assert_eq(at, r->len, "%s: segments cover %zu of %zu bytes", what, at, r->len);
}

/* The bytes of the content segments (special == 0) when trained is 0, or
 * of the trained segments when trained is 1, in order; caller frees. */
static char *gather(const qv_chat_rendered *r, int trained)
{
    char *out = calloc(r->len + 1, 1);
    cr_assert_not_null(out);
    size_t at = 0;
    for (size_t i = 0; i < r->n_segs; ++i) {
        const qv_chat_segment *s = &r->segs[i];
        if (trained ? s->trained : !s->special) {
            memcpy(out + at, s->text, s->len);
            at += s->len;
        }
    }
    return out;
}

static qv_chat_template by_name(const char *name)
{
    qv_chat_template t = QV_CHAT_COUNT;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_by_name(name, &t, &e), QV_OK, "%s: %s", name, e.msg);
    return t;
}

/* ---- rendering ------------------------------------------------------ */

Test(chat, text_equals_llamacpp_byte_for_byte)
{
    for (int t = 0; t < QV_CHAT_COUNT; ++t)
        for (int c = 0; c < 3; ++c) {
            qv_chat_rendered r = render_ok((qv_chat_template)t, CONVS[c].msgs, CONVS[c].n);
            char what[64];
            snprintf(what, sizeof what, "%s, conversation %d", qv_chat_name((qv_chat_template)t), c);
            check_segments(&r, what);
            cr_assert_eq(r.len, strlen(EXPECTED[t][c]), "%s: %zu bytes, llama.cpp %zu", what,
                         r.len, strlen(EXPECTED[t][c]));
            cr_assert_str_eq(r.text, EXPECTED[t][c], "%s", what);
            /* the segments themselves, joined, are the same text */
            char *joined = calloc(r.len + 1, 1);
            cr_assert_not_null(joined);
            size_t at = 0;
            for (size_t i = 0; i < r.n_segs; ++i) {
                memcpy(joined + at, r.segs[i].text, r.segs[i].len);
                at += r.segs[i].len;
            }
            cr_assert_str_eq(joined, EXPECTED[t][c], "%s", what);
            free(joined);
            qv_chat_rendered_free(&r);
        }
}

Test(chat, generation_prompt_is_what_llamacpp_appends)
{
    for (int t = 0; t < QV_CHAT_COUNT; ++t) {
        const char *g = qv_chat_generation_prompt((qv_chat_template)t);
        cr_assert_not_null(g);
        size_t n0 = strlen(EXPECTED[t][0]), ng = strlen(g);
        cr_assert_eq(strlen(EXPECTED_GEN[t]), n0 + ng, "%s", qv_chat_name((qv_chat_template)t));
        cr_assert_eq(memcmp(EXPECTED_GEN[t], EXPECTED[t][0], n0), 0);
        cr_assert_str_eq(EXPECTED_GEN[t] + n0, g, "%s", qv_chat_name((qv_chat_template)t));
    }
    cr_assert_str_eq(qv_chat_generation_prompt(QV_CHAT_LLAMA3),
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    cr_assert_str_eq(qv_chat_generation_prompt(QV_CHAT_BITNET), "Assistant: ");
    cr_assert_null(qv_chat_generation_prompt(QV_CHAT_COUNT));
}

/* Content (special == 0) and trained bytes, by hand from chat.h's rules,
 * for conversations 1 and 2. T() is the trimmed content. */
#define T_U1 "What is <|eot_id|> in\tLLaMA-3?"
#define T_A1 "It ends a turn: <|im_end|> [INST] </s><s>"
#define U1 "  " T_U1 "\n"
#define A1 "\n" T_A1 "\n\n"
#define S2 "  R\303\251ponds en fran\303\247ais.  "
#define U2 "Bonjour \346\227\245\346\234\254\r\n"
#define T2 "R\303\251ponds en fran\303\247ais.Bonjour \346\227\245\346\234\254Salut !Au revoir."
static const struct {
    const char *content[2];
    const char *trained[2];
} FLAGS[QV_CHAT_COUNT] = {
    [QV_CHAT_LLAMA3] = {{T_U1 T_A1, T2},
                        {T_A1 "<|eot_id|>", "Salut !<|eot_id|>Au revoir.<|eot_id|>"}},
    [QV_CHAT_LLAMA2] = {{U1 A1, S2 U2 "Salut ! Au revoir.\v"},
                        {A1 "</s>", "Salut !</s> Au revoir.\v</s>"}},
    [QV_CHAT_LLAMA2_SYS] = {{U1 A1, S2 U2 "Salut ! Au revoir.\v"},
                            {A1 "</s>", "Salut !</s> Au revoir.\v</s>"}},
    [QV_CHAT_LLAMA2_SYS_BOS] = {{U1 A1, S2 U2 "Salut ! Au revoir.\v"},
                                {A1 "</s>", "Salut !</s> Au revoir.\v</s>"}},
    [QV_CHAT_LLAMA2_SYS_STRIP] = {{T_U1 T_A1, T2},
                                  {T_A1 "</s>", "Salut !</s>Au revoir.</s>"}},
    [QV_CHAT_CHATML] = {{U1 A1, S2 U2 "Salut ! Au revoir.\v"},
                        {A1 "<|im_end|>", "Salut !<|im_end|> Au revoir.\v<|im_end|>"}},
    [QV_CHAT_BITNET] = {{T_U1 T_A1, T2},
                        {T_A1 "<|eot_id|>", "Salut !<|eot_id|>Au revoir.<|eot_id|>"}},
};

Test(chat, content_is_never_markup_and_only_answers_are_trained)
{
    for (int t = 0; t < QV_CHAT_COUNT; ++t)
        for (int c = 1; c <= 2; ++c) {
            qv_chat_rendered r = render_ok((qv_chat_template)t, CONVS[c].msgs, CONVS[c].n);
            const char *name = qv_chat_name((qv_chat_template)t);
            char *content = gather(&r, 0), *trained = gather(&r, 1);
            cr_assert_str_eq(content, FLAGS[t].content[c - 1], "%s, conversation %d: content",
                             name, c);
            cr_assert_str_eq(trained, FLAGS[t].trained[c - 1], "%s, conversation %d: trained",
                             name, c);
            free(content);
            free(trained);
            qv_chat_rendered_free(&r);
        }
}

Test(chat, llama3_segments_exactly)
{
    qv_chat_rendered r = render_ok(QV_CHAT_LLAMA3, CONV1, 2);
    static const struct {
        const char *text;
        int special, trained;
    } want[] = {
        {"<|start_header_id|>user<|end_header_id|>\n\n", 1, 0},
        {T_U1, 0, 0}, /* "<|eot_id|>" in here is text, never the token */
        {"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", 1, 0},
        {T_A1, 0, 1},
        {"<|eot_id|>", 1, 1},
    };
    cr_assert_eq(r.n_segs, 5);
    for (size_t i = 0; i < 5; ++i) {
        cr_assert_eq(r.segs[i].len, strlen(want[i].text), "segment %zu", i);
        cr_assert_eq(memcmp(r.segs[i].text, want[i].text, r.segs[i].len), 0, "segment %zu", i);
        cr_assert_eq(r.segs[i].special, want[i].special, "segment %zu", i);
        cr_assert_eq(r.segs[i].trained, want[i].trained, "segment %zu", i);
    }
    qv_chat_rendered_free(&r);
}

Test(chat, no_bos_in_the_text)
{
    /* llama.cpp's llama3 output starts at the first header, not
     * <|begin_of_text|>; llama2's at "[INST] ", not <s>: BOS is the
     * caller's, per the vocabulary's add_bos flag. */
    qv_chat_rendered r = render_ok(QV_CHAT_LLAMA3, CONV0, 6);
    cr_assert_eq(strncmp(r.text, "<|start_header_id|>system", 25), 0);
    cr_assert_null(strstr(r.text, "<|begin_of_text|>"));
    qv_chat_rendered_free(&r);
    r = render_ok(QV_CHAT_LLAMA2_SYS_BOS, CONV0, 6);
    cr_assert_eq(strncmp(r.text, "[INST] <<SYS>>", 14), 0);
    qv_chat_rendered_free(&r);
}

Test(chat, render_errors)
{
    qv_chat_rendered r;
    qv_err e;
    const qv_chat_msg tool[] = {{"user", "hi"}, {"tool", "{}"}};
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_render(QV_CHAT_CHATML, tool, 2, &r, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "message 2 of 2"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "unknown role \"tool\""), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "system, user and assistant"), "%s", e.msg);
    cr_assert_null(r.text);
    cr_assert_eq(r.n_segs, 0);

    const qv_chat_msg upper[] = {{"User", "hi"}};
    cr_assert_eq(qv_chat_render(QV_CHAT_LLAMA3, upper, 1, &r, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "\"User\""), "%s", e.msg);

    const qv_chat_msg nocontent[] = {{"user", NULL}};
    cr_assert_eq(qv_chat_render(QV_CHAT_LLAMA3, nocontent, 1, &r, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "no content"), "%s", e.msg);

    cr_assert_eq(qv_chat_render(QV_CHAT_LLAMA3, CONV0, 0, &r, &e), QV_ERR_INVALID);
    cr_assert_not_null(strstr(e.msg, "no messages"), "%s", e.msg);
    cr_assert_eq(qv_chat_render(QV_CHAT_COUNT, CONV0, 6, &r, &e), QV_ERR_INVALID);
    cr_assert_eq(qv_chat_render(QV_CHAT_LLAMA3, CONV0, 6, NULL, &e), QV_ERR_INVALID);

    qv_chat_rendered_free(NULL);
    qv_chat_rendered_free(&r); /* zeroed after an error: a no-op */
    r = render_ok(QV_CHAT_BITNET, CONV0, 6);
    qv_chat_rendered_free(&r);
    cr_assert_null(r.text);
    qv_chat_rendered_free(&r);
}

/* ---- names ---------------------------------------------------------- */

Test(chat, names)
{
    static const char *const names[QV_CHAT_COUNT] = {
        "llama3", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "chatml", "bitnet",
    };
    for (int t = 0; t < QV_CHAT_COUNT; ++t) {
        cr_assert_str_eq(qv_chat_name((qv_chat_template)t), names[t]);
        cr_assert_eq(by_name(names[t]), (qv_chat_template)t);
        cr_assert_not_null(strstr(qv_chat_names(), names[t]));
    }
    cr_assert_null(qv_chat_name(QV_CHAT_COUNT));

    qv_chat_template t;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_by_name("Llama3", &t, &e), QV_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(e.msg, "\"Llama3\""), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "--chat-template"), "%s", e.msg);
    cr_assert_not_null(strstr(e.msg, "llama2-sys-strip, chatml, bitnet"), "%s", e.msg);
    cr_assert_eq(qv_chat_by_name("zephyr", &t, &e), QV_ERR_NOT_FOUND);
    cr_assert_eq(qv_chat_by_name(NULL, &t, &e), QV_ERR_INVALID);
}

/* ---- detection ------------------------------------------------------ */

static void detects(const char *tmpl, qv_chat_template want, const char *what)
{
    qv_chat_template t = QV_CHAT_COUNT;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_detect(tmpl, &t, &e), QV_OK, "%s: %s", what, e.msg);
    cr_assert_eq(t, want, "%s: detected %s, expected %s", what, qv_chat_name(t),
                 qv_chat_name(want));
}

/* Refused with code; the message contains part (and always the remedy). */
static void refused(const char *tmpl, qv_status code, const char *part, const char *what)
{
    qv_chat_template t = QV_CHAT_COUNT;
    qv_err e;
    qv_err_clear(&e);
    cr_assert_eq(qv_chat_detect(tmpl, &t, &e), code, "%s: %s", what, e.msg);
    cr_assert_eq(t, QV_CHAT_COUNT, "%s: output written on failure", what);
    cr_assert_not_null(strstr(e.msg, part), "%s: %s", what, e.msg);
    cr_assert_not_null(strstr(e.msg, "--chat-template NAME"), "%s: %s", what, e.msg);
    cr_assert_not_null(strstr(e.msg, qv_chat_names()), "%s: %s", what, e.msg);
}

Test(chat, detects_real_templates_as_llamacpp_does)
{
    detects(LLAMA3_8B_INSTRUCT, QV_CHAT_LLAMA3, "Meta-Llama-3-8B-Instruct");
    detects(LLAMA31_8B_INSTRUCT, QV_CHAT_LLAMA3, "Llama-3.1-8B-Instruct");
    detects(LLAMA2_7B_CHAT, QV_CHAT_LLAMA2_SYS_STRIP, "Llama-2-7b-chat");
    detects(MISTRAL_7B_V02, QV_CHAT_LLAMA2, "Mistral-7B-Instruct-v0.2");
    detects(OPENHERMES_25, QV_CHAT_CHATML, "OpenHermes-2.5-Mistral-7B");
    detects(QWEN25_7B_INSTRUCT, QV_CHAT_CHATML, "Qwen2.5-7B-Instruct");
    detects(BITNET_2B4T, QV_CHAT_BITNET, "bitnet-b1.58-2B-4T");
    detects(BITNET_2B4T_GGUF, QV_CHAT_BITNET, "bitnet-b1.58-2B-4T GGUF placeholder");
    /* a template that is a name, as llama.cpp's first step */
    detects("chatml", QV_CHAT_CHATML, "name chatml");
    detects("llama2", QV_CHAT_LLAMA2, "name llama2");
    detects("llama2-sys-bos", QV_CHAT_LLAMA2_SYS_BOS, "name llama2-sys-bos");
    detects("llama3", QV_CHAT_LLAMA3, "name llama3");
    detects("bitnet", QV_CHAT_BITNET, "name bitnet");
}

Test(chat, detection_keeps_llamacpp_order)
{
    /* <|im_start|> is tested before the LLaMA-3 headers (llama.cpp: chatml) */
    detects("{{'<|im_start|>' + m['role'] + '<|start_header_id|><|end_header_id|>' + "
            "m['content'] + '<|im_end|>'}}",
            QV_CHAT_CHATML, "chatml with llama3 markers");
    /* a LLaMA-3 template that also says 'Assistant: ' stays llama3: the
     * bitnet rule only runs where llama.cpp finds nothing */
    detects("{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + "
            "'<|eot_id|>' }}{{ 'Assistant: ' }}",
            QV_CHAT_LLAMA3, "llama3 with 'Assistant: '");
    /* <|im_start|> with <|im_sep|> is phi4 to llama.cpp, not chatml */
    refused("{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>'}}",
            QV_ERR_UNSUPPORTED, "llama.cpp's \"phi4\"", "phi4");
    /* bitnet-looking but zephyr to llama.cpp: refused, not bitnet */
    refused("{{ m['role'] | capitalize + ': ' + m['content'] + '<|eot_id|>' }}"
            "{{ 'Assistant: ' }}{{ '<|user|>' }}{{ '<|endoftext|>' }}",
            QV_ERR_UNSUPPORTED, "llama.cpp's \"zephyr\"", "zephyr");
    /* [INST] with [SYSTEM_PROMPT] is mistral-v7, not a llama2 variant */
    refused("[SYSTEM_PROMPT]{{ s }}[/SYSTEM_PROMPT][INST]{{ u }}[/INST]", QV_ERR_UNSUPPORTED,
            "llama.cpp's \"mistral-v7\"", "mistral-v7");
}

Test(chat, detection_refuses_others)
{
    refused(PHI35_MINI, QV_ERR_UNSUPPORTED, "llama.cpp's \"phi3\"", "Phi-3.5-mini-instruct");
    refused("mistral-v7", QV_ERR_UNSUPPORTED, "llama.cpp's \"mistral-v7\"", "name mistral-v7");
    refused("{{ messages }} hello", QV_ERR_UNSUPPORTED, "not one qvac recognises", "garbage");
    refused("Llama3", QV_ERR_UNSUPPORTED, "not one qvac recognises", "wrong-case name");
    refused("", QV_ERR_NOT_FOUND, "no chat template", "empty");
    refused(NULL, QV_ERR_NOT_FOUND, "no chat template", "NULL");
    qv_err e;
    cr_assert_eq(qv_chat_detect("chatml", NULL, &e), QV_ERR_INVALID);
}
