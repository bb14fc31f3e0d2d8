/* formats/vocab_bpe.c — byte-level BPE as llama.cpp does it
 * (llm_tokenizer_bpe, unicode_regex_split): the pre-tokenizer named by
 * tokenizer.ggml.pre splits the text into words with PCRE2 (UTF-8 + UCP),
 * each word's bytes go through the GPT-2 byte alphabet, and the merges of
 * tokenizer.ggml.merges are applied lowest rank first.
 *
 * Where llama.cpp's own regex handling and a plain PCRE2 match part ways,
 * qvac follows llama.cpp:
 *
 *  - Each expression of a pre-tokenizer splits every piece the previous
 *    ones made, matches and the gaps between them alike; a piece is its own
 *    subject, so lookarounds and anchors stop at its ends (PCRE2 gets the
 *    piece, not the whole text).
 *  - The text is first decoded as llama.cpp decodes it: a byte that does
 *    not start a complete sequence is U+FFFD, overlong forms are accepted
 *    (and come out in shortest form), surrogates are kept. PCRE2 sees a
 *    copy in which surrogates are U+E000 and U+180E (white space to
 *    PCRE2's \s, not to llama.cpp) is U+2060: characters that every class
 *    and range below treats as llama.cpp treats the originals.
 *  - The expressions with non-ASCII literal ranges (deepseek, youtu, afmoe,
 *    bloom) run in llama.cpp (std::wregex) on a text whose non-ASCII white
 *    space is U+000B: such a range never matches white space here either.
 *  - llama.cpp runs the expressions that use Unicode classes through
 *    std::regex on a "collapsed" text (one byte per character class), in
 *    which \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo} all mean \p{L}, \p{S} does
 *    not match '~', and $ matches only at the very end. The expressions
 *    below are written for PCRE2 with those meanings (PCRE2_DOLLAR_ENDONLY;
 *    the class rewrites are marked).
 *  - Its hand-written splitters (gpt2, llama3, qwen2, qwen35) behave as
 *    their expressions; the afmoe / tiny_aya digit grouping is not an
 *    expression and is done by hand (VQ_SPLIT_AFMOE_DIGITS), with its
 *    quirk: text before a run of digits joins the first group (the next
 *    expression may split it off again).
 *
 * What is left: PCRE2's Unicode tables (10.42: Unicode 14) against
 * llama.cpp's (Unicode 15.1): about 5,100 code points assigned since
 * Unicode 14 (CJK Extension H, Kawi, ...) are letters, marks or symbols to
 * llama.cpp and unassigned to PCRE2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/vocab_impl.h"

#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_MERGES "tokenizer.ggml.merges"

/* ---- pre-tokenizers --------------------------------------------------- */

#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT2                                                              \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"       \
    "|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3                                                            \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"                  \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                             \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"                       \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* llama.cpp matches the expressions with non-ASCII ranges (std::wregex)
 * after turning non-ASCII white space into U+000B, so a range never
 * matches white space: (?!\s) says so to PCRE2 */
#define RE_CJK_DS                                                            \
    "(?:(?!\\s)[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])+"
#define RE_CJK_KANA "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+"
/* \p{S} without '~' (llama.cpp's collapsed \p{S}): rewritten by hand */
#define RE_DS3_MAIN                                                          \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"                   \
    "|(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+"                      \
    "| ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM                                                             \
    " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}"        \
    "\\x{60C})]+"
/* \p{Lu}\p{Lt}\p{Lm}\p{Lo} and \p{Ll}\p{Lm}\p{Lo} are \p{L} (collapsed) */
#define RE_CASED_WORDS(digits, tail)                                         \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]*[\\p{L}\\p{M}]+" RE_CONTRACT "?"     \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+[\\p{L}\\p{M}]*" RE_CONTRACT "?"   \
    "|" digits "| ?[^\\s\\p{L}\\p{N}]+" tail "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_UPPER(cls) "(?:(?=[" cls "])[^a-z])"
#define RE_LOWER(cls) "(?:(?=[" cls "])[^A-Z])"
#define RE_TEKKEN_WORDS(cls, contr)                                          \
    "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER(cls) "*" RE_LOWER(cls) "+" contr        \
    "|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER(cls) "+" RE_LOWER(cls) "*" contr

#define AFMOE_DIGITS "\x01" /* marks VQ_SPLIT_AFMOE_DIGITS */

typedef struct pre_set {
    const char *re[VQ_MAX_REGEX];
} pre_set;

enum {
    P_DEFAULT, P_GPT2, P_LLAMA3, P_JAIS2, P_DEEPSEEK_LLM, P_DEEPSEEK3,
    P_YOUTU, P_DEEPSEEK_CODER, P_FALCON, P_STARCODER, P_QWEN2, P_QWEN35,
    P_BLOOM, P_VIKING, P_TEKKEN, P_CHAMELEON, P_GPT4O, P_GRANITE_EMB,
    P_TINY_AYA, P_BAILING, P_SEED_CODER, P_AFMOE, P_LAGUNA, P_EXAONE_MOE,
    P_MINICPM5, P_N
};

static const pre_set PRE_SETS[P_N] = {
    [P_DEFAULT] = {{"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+",
                    "[0-9][0-9][0-9]"}},
    [P_GPT2] = {{RE_GPT2}},
    [P_LLAMA3] = {{RE_LLAMA3}},
    [P_JAIS2] = {{RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
                  "|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)"
                  "|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)"
                  "|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"}},
    [P_DEEPSEEK_LLM] = {{
        "[\\r\\n]",
        "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
        "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}"
        "\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
        "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
        "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
        "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
        "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
        "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
        "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"
        "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
        "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}"
        "\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
        "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
        "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
        "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
        "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
        "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"
        "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
        "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
        "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"
        "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
        "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
        "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
        "\\s?(?:(?!\\s)[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}"
        "\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}])+",
        "\\s+$", RE_CJK_DS, "\\p{N}+"}},
    [P_DEEPSEEK3] = {{"\\p{N}{1,3}", RE_CJK_KANA, RE_DS3_MAIN}},
    [P_YOUTU] = {{"[\\x{AC00}-\\x{D7A3}\\x{3131}-\\x{318E}]+"
                  "|[\\x{FF01}\\x{2026}\\x{201C}\\x{201D}\\x{2018}\\x{2019}"
                  "\\x{2014}\\x{FF1A}\\x{FF1B}\\x{FF0C}\\x{3001}-\\x{303F}"
                  "\\x{FE30}-\\x{FE4F}]+|[\\x{3105}-\\x{312F}]+|" RE_CJK_KANA,
                  RE_CASED_WORDS("\\p{N}", "[\\r\\n/]*")}},
    [P_DEEPSEEK_CODER] = {{"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK_DS,
                           "\\p{N}"}},
    [P_FALCON] = {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [P_STARCODER] = {{"\\p{N}", RE_GPT2}},
    [P_QWEN2] = {{RE_QWEN2}},
    [P_QWEN35] = {{RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"
                   "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
                   "|\\s+(?!\\S)|\\s+"}},
    [P_BLOOM] = {{RE_BLOOM}},
    [P_VIKING] = {{RE_BLOOM, "\\p{N}"}},
    [P_TEKKEN] = {{RE_TEKKEN_WORDS("\\p{L}", "") "|\\p{N}"
                   "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+"
                   "|\\s+(?!\\S)|\\s+"}},
    [P_CHAMELEON] = {{"<sentinel:[0-9]+>", "IMGIMG[A-I]{1,4}Z",
                      "[\\t\\n]|    |  ", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]",
                      RE_GPT2}},
    [P_GPT4O] = {{RE_TEKKEN_WORDS("\\p{L}", RE_CONTRACT "?")
                  "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
                  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [P_GRANITE_EMB] = {{RE_TEKKEN_WORDS("\\p{L}\\p{M}", RE_CONTRACT "?")
                        "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
                        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [P_TINY_AYA] = {{AFMOE_DIGITS,
                     RE_CASED_WORDS("\\p{N}{1,3}", "[\\r\\n/]*")}},
    [P_BAILING] = {{"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])"
                    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]"
                    "|\\s+(?!\\S)|\\s+"}},
    [P_SEED_CODER] = {{RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}"
                       "| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+"
                       "|\\s+(?!\\S)|\\s+"}},
    [P_AFMOE] = {{AFMOE_DIGITS,
                  "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{8C48}-\\x{FAFF}"
                  "\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}\\x{FF65}-\\x{FF9F}"
                  "\\x{2F00}-\\x{2FDF}\\x{E40}-\\x{E7F}\\x{E80}-\\x{EFF}"
                  "\\x{1780}-\\x{17FF}\\x{1000}-\\x{109F}\\x{AA60}-\\x{AA7F}"
                  "\\x{A9E0}-\\x{A9FF}\\x{AC00}-\\x{D7AF}\\x{1100}-\\x{11FF}]+",
                  RE_DS3_MAIN}},
    [P_LAGUNA] = {{"[^\\n]+|[\\n]+", RE_QWEN2}},
    [P_EXAONE_MOE] = {{RE_CONTRACT
                       "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+"
                       "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]"
                       "|\\s+(?!\\S)|\\s+"}},
    [P_MINICPM5] = {{"\\p{N}{1,3}",
                     RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+"
                     "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
                     "|\\s+(?!\\S)|\\s+"}},
};

enum {
    F_IGNORE_MERGES = 1,
    F_ADD_BOS = 2,
    F_NO_CLEAN = 4,   /* clean_spaces = false */
    F_BOS_NULL = 8,
    F_ADD_SEP = 16
};

/* tokenizer.ggml.pre values and what llama.cpp makes of them. */
static const struct {
    const char *name;
    int set;
    unsigned flags;
} PRE_NAMES[] = {
    {"default", P_DEFAULT, 0},
    {"llama3", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"llama-v3", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"llama-bpe", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"falcon3", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"falcon-h1", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"pixtral", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"midm-2.0", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"lfm2", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"jina-v5-nano", P_LLAMA3, F_IGNORE_MERGES | F_ADD_BOS},
    {"minicpm5", P_MINICPM5, F_IGNORE_MERGES},
    {"deepseek-llm", P_DEEPSEEK_LLM, F_NO_CLEAN},
    {"deepseek-coder", P_DEEPSEEK_CODER, F_NO_CLEAN},
    {"deepseek-v3", P_DEEPSEEK3, F_NO_CLEAN},
    {"hunyuan-dense", P_DEEPSEEK3, F_NO_CLEAN},
    {"joyai-llm", P_DEEPSEEK3, F_NO_CLEAN},
    {"youtu", P_YOUTU, F_NO_CLEAN | F_IGNORE_MERGES},
    {"falcon", P_FALCON, 0},
    {"mpt", P_GPT2, 0},
    {"starcoder", P_STARCODER, 0},
    {"gpt-2", P_GPT2, 0},
    {"phi-2", P_GPT2, 0},
    {"jina-es", P_GPT2, 0},
    {"jina-de", P_GPT2, 0},
    {"gigachat", P_GPT2, 0},
    {"jina-v2-es", P_GPT2, 0},
    {"jina-v2-de", P_GPT2, 0},
    {"a.x-4.0", P_GPT2, 0},
    {"mellum", P_GPT2, 0},
    {"modern-bert", P_GPT2, 0},
    {"jais-2", P_JAIS2, 0},
    {"jina-v1-en", P_GPT2, F_ADD_SEP},
    {"jina-v2-code", P_GPT2, F_ADD_SEP},
    {"roberta-bpe", P_GPT2, F_ADD_SEP},
    {"refact", P_STARCODER, 0},
    {"command-r", P_STARCODER, F_NO_CLEAN},
    {"qwen2", P_QWEN2, F_NO_CLEAN},
    {"deepseek-r1-qwen", P_QWEN2, F_NO_CLEAN},
    {"kormo", P_QWEN2, F_NO_CLEAN},
    {"f2llmv2", P_QWEN2, F_NO_CLEAN},
    {"qwen35", P_QWEN35, F_NO_CLEAN},
    {"stablelm2", P_QWEN2, 0},
    {"olmo", P_GPT2, 0},
    {"dbrx", P_LLAMA3, 0},
    {"smaug-bpe", P_LLAMA3, 0},
    {"poro-chat", P_BLOOM, F_NO_CLEAN},
    {"glm4", P_LLAMA3, F_BOS_NULL},
    {"chatglm-bpe", P_LLAMA3, F_BOS_NULL},
    {"viking", P_VIKING, F_NO_CLEAN},
    {"jais", P_GPT2, 0},
    {"tekken", P_TEKKEN, F_NO_CLEAN | F_IGNORE_MERGES | F_ADD_BOS},
    {"smollm", P_STARCODER, F_NO_CLEAN},
    {"codeshell", P_STARCODER, 0},
    {"bloom", P_BLOOM, 0},
    {"gpt3-finnish", P_BLOOM, 0},
    {"exaone", P_STARCODER, 0},
    {"exaone4", P_GPT2, 0},
    {"exaone-moe", P_EXAONE_MOE, 0},
    {"chameleon", P_CHAMELEON, F_ADD_BOS | F_NO_CLEAN},
    {"minerva-7b", P_STARCODER, 0},
    {"megrez", P_QWEN2, 0},
    {"gpt-4o", P_GPT4O, F_NO_CLEAN},
    {"llama4", P_GPT4O, F_NO_CLEAN},
    {"kanana2", P_GPT4O, F_NO_CLEAN},
    {"talkie", P_GPT4O, F_NO_CLEAN},
    {"granite-embed-multi-97m", P_GRANITE_EMB, F_NO_CLEAN | F_IGNORE_MERGES},
    {"tiny_aya", P_TINY_AYA, F_NO_CLEAN},
    {"cohere2moe", P_TINY_AYA, F_NO_CLEAN},
    {"trillion", P_GPT2, F_NO_CLEAN},
    {"granite-docling", P_GPT2, F_NO_CLEAN},
    {"bailingmoe", P_BAILING, F_NO_CLEAN},
    {"bailingmoe2", P_BAILING, F_NO_CLEAN},
    {"llada-moe", P_BAILING, F_NO_CLEAN},
    {"seed-coder", P_SEED_CODER, F_NO_CLEAN},
    {"hunyuan", P_QWEN2, F_NO_CLEAN},
    {"grok-2", P_QWEN2, F_NO_CLEAN},
    {"afmoe", P_AFMOE, F_NO_CLEAN},
    {"laguna", P_LAGUNA, F_NO_CLEAN},
    {"minimax-m2", P_GPT4O, F_NO_CLEAN},
    {"solar-open", P_QWEN2, F_NO_CLEAN},
    {"mellum2", P_STARCODER, 0},
};

/* Names llama.cpp knows that qvac does not implement. */
static const char *const PRE_REFUSED[] = {
    "kimi-k2",     /* hand-written Han-aware splitter */
    "superbpe",    /* zero-width splits */
    "gemma4", "granite-embed-multi-311m", "sarvam-moe", /* SPM-style BPE */
    "whitespace", NULL};

/* ---- setup ------------------------------------------------------------ */

static uint64_t merge_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    key *= 0xC4CEB9FE1A85EC53ull;
    key ^= key >> 33;
    return key;
}

static const vq_merge *merge_find(const qv_vocab *v, int32_t l, int32_t r)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint64_t i = merge_hash(key) & v->mmask;; i = (i + 1) & v->mmask) {
        const vq_merge *m = &v->merges[i];
        if (m->key == key)
            return m;
        if (m->key == UINT64_MAX)
            return NULL;
    }
}

static qv_status compile(const char *pattern, pcre2_code **out, qv_err *err)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY,
                                   &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       "vocabulary: PCRE2 refuses pre-tokenizer expression at "
                       "offset %zu: %s (PCRE2 %d.%d)", (size_t)at,
                       (const char *)msg, PCRE2_MAJOR, PCRE2_MINOR);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* else interpreted */
    *out = re;
    return QV_OK;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 stands for itself, the other
 * 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD) for U+0100 .. U+0143 in order. */
static uint32_t gpt2_cpt(int b)
{
    if (b <= 0x20)
        return 256 + (uint32_t)b;
    if (b >= 0x7F && b <= 0xA0)
        return 256 + 33 + (uint32_t)(b - 0x7F);
    if (b == 0xAD)
        return 256 + 33 + 34;
    return (uint32_t)b;
}

/* The byte a GPT-2 alphabet character stands for, or -1. */
static int gpt2_byte(uint32_t c)
{
    if (c < 256)
        return gpt2_cpt((int)c) == c ? (int)c : -1;
    if (c < 256 + 33)
        return (int)(c - 256);
    if (c < 256 + 33 + 34)
        return (int)(c - 256 - 33 + 0x7F);
    if (c == 256 + 33 + 34)
        return 0xAD;
    return -1;
}

static qv_status read_merges(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    const char *const *strs;
    size_t n;
    qv_err e;
    qv_status s = qv_gguf_get_str_arr(g, KEY_MERGES, &strs, NULL, &n, &e);
    if (s == QV_ERR_NOT_FOUND)
        return qv_fail(err, QV_ERR_CORRUPT,
                       "vocabulary: the file has no %s, which a 'gpt2' (BPE) "
                       "tokenizer needs", KEY_MERGES);
    if (s != QV_OK)
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);
    if (n > (size_t)INT32_MAX / 4)
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s has %zu rules, "
                       "more than ranks can number", KEY_MERGES, n);
    uint64_t cap = 1024;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    v->merges = malloc((size_t)cap * sizeof *v->merges);
    if (!v->merges)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory for %zu "
                       "merges", n);
    for (uint64_t i = 0; i < cap; ++i)
        v->merges[i].key = UINT64_MAX;
    v->mmask = (uint32_t)(cap - 1);
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < n; ++i) {
        /* llama.cpp: the C string, split at the first space after byte 0 */
        const char *w = strs[i];
        size_t wl = strlen(w);
        const char *sp = wl > 1 ? memchr(w + 1, ' ', wl - 1) : NULL;
        if (!sp)
            continue; /* llama.cpp files it as ("", ""), which never applies */
        size_t ll = (size_t)(sp - w), rl = wl - ll - 1;
        if (rl == 0)
            continue; /* an empty side never matches a symbol */
        int32_t ls = vq_intern(v, w, ll), rs = vq_intern(v, sp + 1, rl);
        if (wl > cat_cap) {
            char *c = realloc(cat, wl);
            if (!c) {
                free(cat);
                return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
            }
            cat = c;
            cat_cap = wl;
        }
        memcpy(cat, w, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t ms = ls < 0 || rs < 0 ? -1 : vq_intern(v, cat, ll + rl);
        if (ms < 0) {
            free(cat);
            return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory for "
                           "%s", KEY_MERGES);
        }
        uint64_t key = ((uint64_t)(uint32_t)ls << 32) | (uint32_t)rs;
        uint64_t j = merge_hash(key) & v->mmask;
        while (v->merges[j].key != UINT64_MAX && v->merges[j].key != key)
            j = (j + 1) & v->mmask;
        if (v->merges[j].key == key)
            continue; /* the first rank of a repeated rule stands */
        v->merges[j].key = key;
        v->merges[j].rank = (int32_t)i;
        v->merges[j].sid = ms;
    }
    free(cat);
    return QV_OK;
}

qv_status vq_bpe_init(qv_vocab *v, const qv_gguf *g, qv_err *err)
{
    const char *pre = "";
    size_t pre_len = 0;
    qv_err e;
    qv_status s = qv_gguf_get_str(g, KEY_PRE, &pre, &pre_len, &e);
    if (s == QV_ERR_NOT_FOUND) {
        pre = ""; /* llama.cpp warns and uses "default" */
        pre_len = 0;
    } else if (s != QV_OK) {
        return qv_fail(err, QV_ERR_CORRUPT, "vocabulary: %s", e.msg);
    }
    int set = -1;
    unsigned flags = 0;
    if (pre_len == 0) {
        set = P_DEFAULT;
    } else {
        for (size_t i = 0; i < sizeof PRE_NAMES / sizeof PRE_NAMES[0]; ++i)
            if (!strcmp(pre, PRE_NAMES[i].name) && strlen(pre) == pre_len) {
                set = PRE_NAMES[i].set;
                flags = PRE_NAMES[i].flags;
                break;
            }
    }
    if (set < 0) {
        int refused = 0;
        for (size_t i = 0; PRE_REFUSED[i]; ++i)
            refused |= !strcmp(pre, PRE_REFUSED[i]);
        char b[64];
        size_t k = 0;
        for (size_t i = 0; i < pre_len && k + 5 < sizeof b; ++i) {
            unsigned char c = (unsigned char)pre[i];
            if (c >= 0x20 && c < 0x7F)
                b[k++] = (char)c;
            else
                k += (size_t)snprintf(b + k, sizeof b - k, "\\x%02x", c);
        }
        b[k] = '\0';
        return qv_fail(err, QV_ERR_UNSUPPORTED,
                       refused ? "vocabulary: %s = '%s' is a pre-tokenizer "
                                 "llama.cpp has but qvac does not implement"
                               : "vocabulary: %s = '%s' is not a "
                                 "pre-tokenizer llama.cpp knows; the file "
                                 "needs a newer reader or a reconversion",
                       KEY_PRE, b);
    }
    v->pre = strdup(pre_len ? pre : "default");
    if (!v->pre)
        return qv_fail(err, QV_ERR_NOMEM, "vocabulary: out of memory");
    if (flags & F_IGNORE_MERGES)
        v->ignore_merges = true;
    if (flags & F_ADD_BOS)
        v->add_bos = true;
    if (flags & F_NO_CLEAN)
        v->clean_spaces = false;
    if (flags & F_BOS_NULL)
        v->bos = QV_TOKEN_NULL;
    if (flags & F_ADD_SEP)
        v->add_sep = true;

    for (int k = 0; k < VQ_MAX_REGEX && PRE_SETS[set].re[k]; ++k) {
        vq_split *sp = &v->split[v->n_split];
        if (!strcmp(PRE_SETS[set].re[k], AFMOE_DIGITS)) {
            sp->kind = VQ_SPLIT_AFMOE_DIGITS;
            if (!v->re_digits && (s = compile("\\p{N}+", &v->re_digits, err)))
                return s;
        } else {
            sp->kind = VQ_SPLIT_REGEX;
            if ((s = compile(PRE_SETS[set].re[k], &sp->re, err)))
                return s;
        }
        v->n_split++;
    }

    if ((s = read_merges(v, g, err)))
        return s;
    for (int b = 0; b < 256; ++b) {
        uint8_t u[4];
        size_t l = vq_utf8_encode(gpt2_cpt(b), u);
        memcpy(v->benc[b], u, 2);
        v->benc[b][2] = (uint8_t)l;
        v->byte_sid[b] = vq_lookup(v, (const char *)u, l);
        char one = (char)b;
        int32_t t = vq_lookup(v, &one, 1);
        v->byte_tok[b] = t < v->n_tokens ? t : -1;
    }
    return QV_OK;
}

void vq_bpe_free(qv_vocab *v)
{
    for (int k = 0; k < v->n_split; ++k)
        pcre2_code_free(v->split[k].re);
    pcre2_code_free(v->re_digits);
    free(v->merges);
}

/* ---- per-call scratch ------------------------------------------------- */

typedef struct bsym {
    int32_t start, n; /* bytes in the encoded word */
    int32_t prev, next;
    int32_t sid;      /* symbol id of its text, -1 if none */
} bsym;

typedef struct bbig {
    int32_t rank, left, right, size, sid;
} bbig;

typedef struct chunks {
    uint32_t *st, *ln;
    size_t n, cap;
} chunks;

struct vq_bpe_scratch {
    pcre2_match_data *md;
    uint8_t *clean, *match;
    size_t clean_cap, match_cap;
    chunks a, b;
    uint8_t *enc;
    size_t enc_cap;
    bsym *sym;
    size_t sym_cap;
    bbig *heap;
    size_t heap_n, heap_cap;
};

vq_bpe_scratch *vq_bpe_scratch_new(void)
{
    vq_bpe_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(1, NULL);
    if (!s->md) {
        free(s);
        return NULL;
    }
    return s;
}

void vq_bpe_scratch_free(vq_bpe_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    free(s->clean);
    free(s->match);
    free(s->a.st);
    free(s->a.ln);
    free(s->b.st);
    free(s->b.ln);
    free(s->enc);
    free(s->sym);
    free(s->heap);
    free(s);
}

static int chunk_push(chunks *c, size_t st, size_t ln)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        uint32_t *a = realloc(c->st, cap * sizeof *a);
        if (!a)
            return -1;
        c->st = a;
        uint32_t *b = realloc(c->ln, cap * sizeof *b);
        if (!b)
            return -1;
        c->ln = b;
        c->cap = cap;
    }
    c->st[c->n] = (uint32_t)st;
    c->ln[c->n] = (uint32_t)ln;
    c->n++;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---- text preparation ------------------------------------------------- */

/* True when s is well-formed UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF) without U+180E: then llama.cpp's decoding gives it back as it
 * is and PCRE2 classes it as llama.cpp does. */
static bool plain_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return false;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 ||
                (s[i + 2] & 0xC0) != 0x80)
                return false;
            if (c == 0xE0 && s[i + 1] < 0xA0)
                return false; /* overlong */
            if (c == 0xED && s[i + 1] >= 0xA0)
                return false; /* surrogate */
            if (c == 0xE1 && s[i + 1] == 0xA0 && s[i + 2] == 0x8E)
                return false; /* U+180E */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 ||
                (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return false;
            if (c == 0xF0 && s[i + 1] < 0x90)
                return false;
            if (c == 0xF4 && s[i + 1] >= 0x90)
                return false;
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

/* Sets *clean (the text as llama.cpp re-encodes it) and *match (the same
 * with stand-ins for PCRE2), both *n bytes. */
static int prepare(vq_bpe_scratch *s, const char *text, size_t len,
                   const uint8_t **clean, const uint8_t **match, size_t *n)
{
    const uint8_t *t = (const uint8_t *)text;
    if (plain_utf8(t, len)) {
        *clean = *match = t;
        *n = len;
        return 0;
    }
    /* each input byte gives at most 3 output bytes (U+FFFD) */
    if (grow((void **)&s->clean, &s->clean_cap, len * 3 + 1, 1) ||
        grow((void **)&s->match, &s->match_cap, len * 3 + 1, 1))
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t c = vq_utf8_decode(t + i, len - i, &used);
        i += used;
        uint8_t u[4];
        size_t l = vq_utf8_encode(c, u);
        memcpy(s->clean + k, u, l);
        if (c >= 0xD800 && c <= 0xDFFF) {
            /* U+E000 (private use) for a surrogate: "other" to PCRE2 and
             * llama.cpp alike, and inside the same literal ranges */
            memcpy(s->match + k, "\xEE\x80\x80", 3);
        } else if (c == 0x180E) {
            /* U+2060 (word joiner) for U+180E: a format character that
             * PCRE2's \s does not take, inside the same literal ranges */
            memcpy(s->match + k, "\xE2\x81\xA0", 3);
        } else {
            memcpy(s->match + k, u, l);
        }
        k += l;
    }
    *clean = s->clean;
    *match = s->match;
    *n = k;
    return 0;
}

/* ---- splitting --------------------------------------------------------- */

static int match_at(pcre2_code *re, vq_bpe_scratch *s, const uint8_t *subj,
                    size_t n, size_t off, uint32_t opts, size_t *ms,
                    size_t *me)
{
    int rc = pcre2_match(re, subj, n, off, opts | PCRE2_NO_UTF_CHECK, s->md,
                         NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && rc != PCRE2_ERROR_PARTIAL)
        rc = pcre2_match(re, subj, n, off, opts | PCRE2_NO_UTF_CHECK |
                         PCRE2_NO_JIT, s->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0)
        return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static size_t next_char(const uint8_t *t, size_t n, size_t i)
{
    i++;
    while (i < n && (t[i] & 0xC0) == 0x80)
        i++;
    return i;
}

static qv_status regex_error(int rc, size_t at, qv_err *err)
{
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return qv_fail(err, QV_ERR_UNSUPPORTED,
                   "tokenize: the pre-tokenizer's expression failed at byte "
                   "%zu: %s", at, (const char *)msg);
}

/* One expression over one piece [st, st+ln): matches and gaps to out. */
static qv_status split_regex(pcre2_code *re, vq_bpe_scratch *s,
                             const uint8_t *m, size_t st, size_t ln,
                             chunks *out, qv_err *err)
{
    const uint8_t *subj = m + st;
    size_t prev = 0, off = 0;
    uint32_t opts = 0;
    for (;;) {
        size_t ms, me;
        int rc = match_at(re, s, subj, ln, off, opts, &ms, &me);
        if (rc < 0)
            return regex_error(rc, st + off, err);
        if (rc == 0)
            break;
        if (ms > prev && chunk_push(out, st + prev, ms - prev))
            goto nomem;
        if (me > ms && chunk_push(out, st + ms, me - ms))
            goto nomem;
        prev = me;
        off = me;
        /* after an empty match, look for a non-empty one at the same
         * place (std::regex_iterator moves on likewise) */
        opts = me == ms ? PCRE2_NOTEMPTY_ATSTART : 0;
    }
    if (prev < ln && chunk_push(out, st + prev, ln - prev))
        goto nomem;
    return QV_OK;
nomem:
    return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
}

/* llama.cpp's unicode_regex_split_custom_afmoe: each run of digits is cut
 * into a first group of (length % 3) digits and then groups of three; the
 * text before a run goes with its first group. */
static qv_status split_afmoe(const qv_vocab *v, vq_bpe_scratch *s,
                             const uint8_t *m, size_t st, size_t ln,
                             chunks *out, qv_err *err)
{
    const uint8_t *subj = m + st;
    size_t prev = 0, off = 0;
    while (off < ln) {
        size_t ms, me;
        int rc = match_at(v->re_digits, s, subj, ln, off, 0, &ms, &me);
        if (rc < 0)
            return regex_error(rc, st + off, err);
        if (rc == 0)
            break;
        size_t count = 0;
        for (size_t i = ms; i < me; i = next_char(subj, me, i))
            count++;
        size_t cur = ms, group = count % 3 ? count % 3 : 3;
        while (cur < me) {
            for (size_t g = 0; g < group; ++g)
                cur = next_char(subj, me, cur);
            if (cur > prev && chunk_push(out, st + prev, cur - prev))
                goto nomem;
            prev = cur;
            group = 3;
        }
        off = me > off ? me : off + 1;
    }
    if (prev < ln && chunk_push(out, st + prev, ln - prev))
        goto nomem;
    return QV_OK;
nomem:
    return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
}

static qv_status split_all(const qv_vocab *v, vq_bpe_scratch *s,
                           const uint8_t *match, size_t n, chunks **words,
                           qv_err *err)
{
    chunks *cur = &s->a, *nxt = &s->b;
    cur->n = 0;
    if (chunk_push(cur, 0, n))
        return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    for (int k = 0; k < v->n_split; ++k) {
        nxt->n = 0;
        for (size_t i = 0; i < cur->n; ++i) {
            qv_status st = v->split[k].kind == VQ_SPLIT_REGEX
                ? split_regex(v->split[k].re, s, match, cur->st[i], cur->ln[i],
                              nxt, err)
                : split_afmoe(v, s, match, cur->st[i], cur->ln[i], nxt, err);
            if (st)
                return st;
        }
        chunks *t = cur;
        cur = nxt;
        nxt = t;
    }
    *words = cur;
    return QV_OK;
}

qv_status vq_bpe_pretokenize(const qv_vocab *v, vq_bpe_scratch *s,
                             const char *text, size_t len,
                             const char **clean, const uint32_t **starts,
                             const uint32_t **lens, size_t *n, qv_err *err)
{
    const uint8_t *c, *m;
    size_t cn;
    if (prepare(s, text, len, &c, &m, &cn))
        return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    chunks *w;
    qv_status st = split_all(v, s, m, cn, &w, err);
    if (st)
        return st;
    *clean = (const char *)c;
    *starts = w->st;
    *lens = w->ln;
    *n = w->n;
    return QV_OK;
}

/* ---- merges ------------------------------------------------------------ */

/* a before b: lower rank, then the leftmost */
static bool big_before(const bbig *a, const bbig *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(vq_bpe_scratch *s, bbig x)
{
    if (grow((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof x))
        return -1;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!big_before(&x, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = x;
    return 0;
}

static bbig heap_pop(vq_bpe_scratch *s)
{
    bbig top = s->heap[0];
    bbig last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && big_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!big_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

static int add_bigram(const qv_vocab *v, vq_bpe_scratch *s, int32_t l,
                      int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    int32_t ls = s->sym[l].sid, rs = s->sym[r].sid;
    if (ls < 0 || rs < 0)
        return 0;
    const vq_merge *mg = merge_find(v, ls, rs);
    if (!mg)
        return 0;
    return heap_push(s, (bbig){mg->rank, l, r, s->sym[l].n + s->sym[r].n,
                               mg->sid});
}

/* Emits the tokens of one symbol: its token, else (llama.cpp) each byte
 * of its encoded text that is a token by itself. */
static int emit(const qv_vocab *v, const vq_bpe_scratch *s, const bsym *y,
                vq_ids *out)
{
    if (y->sid >= 0 && y->sid < v->n_tokens)
        return vq_ids_push(out, y->sid);
    for (int32_t k = 0; k < y->n; ++k) {
        int32_t t = v->byte_tok[s->enc[y->start + k]];
        if (t >= 0 && vq_ids_push(out, t))
            return -1;
    }
    return 0;
}

static qv_status bpe_word(const qv_vocab *v, vq_bpe_scratch *s,
                          const uint8_t *w, size_t wl, vq_ids *out,
                          qv_err *err)
{
    if (wl == 0)
        return QV_OK;
    if (grow((void **)&s->enc, &s->enc_cap, wl * 2, 1) ||
        grow((void **)&s->sym, &s->sym_cap, wl, sizeof(bsym)))
        goto nomem;
    size_t el = 0;
    for (size_t i = 0; i < wl; ++i) {
        const uint8_t *e = v->benc[w[i]];
        s->enc[el] = e[0];
        if (e[2] == 2)
            s->enc[el + 1] = e[1];
        s->sym[i] = (bsym){(int32_t)el, e[2], (int32_t)i - 1,
                           i + 1 < wl ? (int32_t)i + 1 : -1,
                           v->byte_sid[w[i]]};
        el += e[2];
    }
    if (v->ignore_merges && wl > 1) {
        int32_t id = vq_lookup(v, (const char *)s->enc, el);
        if (id >= 0 && id < v->n_tokens)
            return vq_ids_push(out, id) ? qv_fail(err, QV_ERR_NOMEM,
                                                  "tokenize: out of memory")
                                        : QV_OK;
    }
    s->heap_n = 0;
    for (size_t i = 1; i < wl; ++i)
        if (add_bigram(v, s, (int32_t)i - 1, (int32_t)i))
            goto nomem;
    while (s->heap_n) {
        bbig b = heap_pop(s);
        bsym *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: a side has changed since */
        l->n += r->n;
        l->sid = b.sid;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = b.left;
        if (add_bigram(v, s, l->prev, b.left) ||
            add_bigram(v, s, b.left, l->next))
            goto nomem;
    }
    for (int32_t i = 0; i != -1; i = s->sym[i].next)
        if (emit(v, s, &s->sym[i], out))
            goto nomem;
    return QV_OK;
nomem:
    return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
}

qv_status vq_bpe_fragment(const qv_vocab *v, vq_bpe_scratch *s,
                          const char *text, size_t len, vq_ids *out,
                          qv_err *err)
{
    const uint8_t *clean, *match;
    size_t n;
    if (prepare(s, text, len, &clean, &match, &n))
        return qv_fail(err, QV_ERR_NOMEM, "tokenize: out of memory");
    chunks *w;
    qv_status st = split_all(v, s, match, n, &w, err);
    if (st)
        return st;
    for (size_t i = 0; i < w->n; ++i)
        if ((st = bpe_word(v, s, clean + w->st[i], w->ln[i], out, err)))
            return st;
    return QV_OK;
}

/* ---- pieces ------------------------------------------------------------ */

int vq_bpe_decode_text(const char *text, size_t len, char **buf, size_t *n,
                       size_t *cap)
{
    const uint8_t *t = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t c = vq_utf8_decode(t + i, len - i, &used);
        i += used;
        int b = gpt2_byte(c);
        size_t need = *n + (b >= 0 ? 2 : 32 + len);
        if (grow((void **)buf, cap, need, 1))
            return -1;
        if (b >= 0) {
            (*buf)[(*n)++] = (char)b;
            continue;
        }
        /* llama.cpp: "[UNK_BYTE_0x" + the character's bytes in hex + the
         * whole token text + "]" */
        uint8_t u[4];
        size_t l = vq_utf8_encode(c, u);
        static const char hex[] = "0123456789abcdef";
        memcpy(*buf + *n, "[UNK_BYTE_0x", 12);
        *n += 12;
        for (size_t k = 0; k < l; ++k) {
            (*buf)[(*n)++] = hex[u[k] >> 4];
            (*buf)[(*n)++] = hex[u[k] & 15];
        }
        memcpy(*buf + *n, text, len);
        *n += len;
        (*buf)[(*n)++] = ']';
    }
    return grow((void **)buf, cap, *n + 1, 1);
}

/* ---- writing qvac's byte vocabulary as llama.cpp's byte-level BPE ------ */

qv_status qv_vocab_write_bytes_bpe(qv_gguf_writer *w, qv_err *err)
{
    /* 256 one-character tokens in the GPT-2 byte alphabet (id = byte), then
     * BOS and EOS: llama.cpp's BPE tokenizer, with no merges, gives every
     * byte its own token, exactly as qvac's byte tokenizer does. */
    enum { N = 258 };
    char text[256][4];
    const char *tokens[N];
    int32_t types[N];
    for (int b = 0; b < 256; b++) {
        uint32_t c = gpt2_cpt(b);
        if (c < 0x80) {
            text[b][0] = (char)c;
            text[b][1] = 0;
        } else { /* U+0080 .. U+07FF: two bytes */
            text[b][0] = (char)(0xC0 | (c >> 6));
            text[b][1] = (char)(0x80 | (c & 0x3F));
            text[b][2] = 0;
        }
        tokens[b] = text[b];
        types[b] = 1; /* llama.cpp LLAMA_TOKEN_TYPE_NORMAL */
    }
    tokens[256] = "<|begin_of_text|>";
    tokens[257] = "<|end_of_text|>";
    types[256] = types[257] = 3; /* LLAMA_TOKEN_TYPE_CONTROL */
    qv_status s;
    if ((s = qv_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", err)) ||
        (s = qv_gguf_writer_set_str(w, KEY_PRE, "gpt-2", err)) ||
        (s = qv_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", tokens, N, err)) ||
        (s = qv_gguf_writer_set_i32_arr(w, "tokenizer.ggml.token_type", types, N, err)) ||
        (s = qv_gguf_writer_set_str_arr(w, KEY_MERGES, tokens, 0, err)) ||
        (s = qv_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256, err)) ||
        (s = qv_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 257, err)) ||
        (s = qv_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, err)) ||
        (s = qv_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false, err)))
        return s;
    return QV_OK;
}
