/* formats/peft.h — qvac's LoRA adapter GGUF and a Hugging Face PEFT LoRA
 * folder (adapter_config.json + adapter_model.safetensors), both ways,
 * exactly. docs/formats.md ("PEFT LoRA adapters") has the mapping and
 * every refusal.
 *
 * One adapter in memory, qv_lora, between the two files:
 *
 *   GGUF (qv_adapter_save)                   PEFT
 *   general.architecture = the base's        (from the base model on import)
 *   adapter.lora.alpha (f32)                 lora_alpha
 *   qvac.lora.rank (u32)                     r
 *   qvac.lora.targets "q,v"                  target_modules ["q_proj","v_proj"]
 *   blk.N.attn_q.weight.lora_a  ne {K, r}    base_model.model.model.layers.N.
 *                                              self_attn.q_proj.lora_A.weight [r, K]
 *   blk.N.attn_q.weight.lora_b  ne {r, N}    ...q_proj.lora_B.weight [N, r]
 *
 * The tensors are the same row-major bytes (GGUF's ne lists the row-major
 * shape backwards); no transpose, no permutation. The seven modules are
 * qvac's (train/model.h, qv_lin_id order): q, k, v, o under self_attn,
 * gate, up, down under mlp. This file depends on common/, formats/gguf.h,
 * formats/safetensors.h and jansson only: the base model's shape is handed
 * in as a qv_peft_base, which cli/ fills from train/. */
#ifndef QV_FORMATS_PEFT_H
#define QV_FORMATS_PEFT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

#define QV_PEFT_MODULES 7
/* The largest rank qv_adapter_info accepts. */
#define QV_PEFT_MAX_RANK 128

/* Module i (0..6, qv_lin_id order): qvac's name ("q"), the GGUF tensor
 * stem ("attn_q"), PEFT's path inside a layer ("self_attn.q_proj") and
 * PEFT's target_modules entry ("q_proj"). NULL outside 0..6. */
const char *qv_peft_module_qvac(int module);
const char *qv_peft_module_gguf(int module);
const char *qv_peft_module_path(int module);
const char *qv_peft_module_target(int module);

/* The tensor names of layer / module, A (b = 0) or B (b = 1):
 * "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight",
 * "blk.3.ffn_up.weight.lora_b". */
void qv_peft_tensor_name(int layer, int module, int b, char *buf, size_t n);
void qv_peft_gguf_name(int layer, int module, int b, char *buf, size_t n);

/* The targets mask (bit i: module i) as qvac writes it ("q,k,v") and
 * back (also "all"); the same grammar as train/model.h's
 * qv_lin_format_targets / qv_lin_parse_targets. */
void qv_peft_format_targets(unsigned mask, char *buf, size_t n);
qv_status qv_peft_parse_targets(const char *s, unsigned *mask, qv_err *err);

/* What an import needs to know of the base model. */
typedef struct qv_peft_base {
    const char *arch;   /* the general.architecture qvac's adapters of this
                           base carry (train/model.h qv_arch_file_name) */
    int32_t n_layers;
    int32_t N[QV_PEFT_MODULES], K[QV_PEFT_MODULES]; /* rows out, columns in */
} qv_peft_base;

/* A LoRA adapter in memory. */
typedef struct qv_lora {
    char arch[64];        /* the base's general.architecture ("" unknown) */
    char base_model[512]; /* base_model_name_or_path ("" when not named) */
    float alpha;
    int32_t rank;
    unsigned targets;     /* bit i: module i; the same in every layer */
    int32_t n_layers;
    int32_t N[QV_PEFT_MODULES], K[QV_PEFT_MODULES];
    /* [layer * QV_PEFT_MODULES + module], row-major f32, owned; NULL for
     * modules not targeted. a: (rank, K), b: (N, rank). */
    float **a, **b;
} qv_lora;

void qv_lora_free(qv_lora **l); /* safe on NULL */

/* Number of tensors (2 per targeted module and layer). */
size_t qv_lora_tensor_count(const qv_lora *l);

/* ---- qvac's adapter GGUF -------------------------------------------- */

/* Reads and checks an adapter GGUF as qv_adapter_save writes it
 * (general.type "adapter", adapter.type "lora", adapter.lora.alpha,
 * qvac.lora.rank, qvac.lora.targets, the targeted modules' F32 lora_a /
 * lora_b in every layer, shapes consistent, values finite; no other
 * tensor). The base model's name, when the file has one, comes from
 * general.base_model.0.repo_url (a huggingface.co address becomes its
 * "org/name"), else general.base_model.0.name. `what` (the path) prefixes
 * messages. Errors: QV_ERR_CORRUPT / QV_ERR_UNSUPPORTED naming the key or
 * tensor, QV_ERR_NOMEM. */
qv_status qv_lora_from_gguf(const qv_gguf *g, const char *what,
                            qv_lora **out, qv_err *err);

/* Writes l as qv_adapter_save writes an adapter: the same keys in the same
 * order, the tensors layer by layer in module order, A then B; atomically.
 * l->arch must be set. */
qv_status qv_lora_write_gguf(const qv_lora *l, const char *path,
                             qv_err *err);

/* ---- PEFT ----------------------------------------------------------- */

/* Reads a PEFT LoRA adapter: config (adapter_config.json's text) and
 * weights (adapter_model.safetensors, parsed), checked against the base
 * model. Refused (QV_ERR_UNSUPPORTED, the message naming the field or the
 * tensor and why qvac cannot hold it exactly): peft_type other than LORA,
 * use_rslora, use_dora, bias other than "none", fan_in_fan_out, lora_bias,
 * use_qalora, non-empty rank_pattern / alpha_pattern, layers_to_transform
 * (unless every layer), layer_replication, modules_to_save,
 * trainable_token_indices, target_parameters, alora_invocation_tokens,
 * target_modules outside the seven, a rank above QV_PEFT_MAX_RANK.
 * Refused as QV_ERR_CORRUPT: malformed JSON or fields, a tensor that is not
 * one of the seven modules' lora_A / lora_B, a layer beyond the base's, a
 * module in some layers but not in others, A without B (or B without A),
 * a target_modules entry with no tensors, shapes that do not match r and
 * the base, NaN or infinity. F16 and BF16 are read as f32. arch is set to
 * base->arch. what (the folder) prefixes messages. */
qv_status qv_lora_from_peft(const char *config, size_t config_n,
                            const qv_st *weights, const qv_peft_base *base,
                            const char *what, qv_lora **out, qv_err *err);

/* adapter_config.json for l (malloc'd, NUL-terminated; the caller frees):
 * indented, keys sorted, as PEFT's save_pretrained writes it. */
qv_status qv_lora_peft_config(const qv_lora *l, char **json, qv_err *err);

/* The safetensors of l's tensors (PEFT names, F32, metadata
 * {"format": "pt"}), for qv_st_write_file / qv_st_write_mem; the data is
 * borrowed from l. */
qv_status qv_lora_peft_weights(const qv_lora *l, qv_st_writer **out,
                               qv_err *err);

/* The files of a PEFT folder. */
#define QV_PEFT_CONFIG "adapter_config.json"
#define QV_PEFT_WEIGHTS "adapter_model.safetensors"

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors, each
 * atomically. dir is created when missing (its parent must exist); an
 * existing folder that is not empty is refused (QV_ERR_INVALID, "pass
 * --force") unless force, which replaces those two files and leaves the
 * rest. */
qv_status qv_lora_write_peft(const qv_lora *l, const char *dir, int force,
                             qv_err *err);

/* Reads dir/adapter_config.json and dir/adapter_model.safetensors
 * (qv_lora_from_peft). A folder with adapter_model.bin instead is refused
 * with the way out (qvac reads safetensors only: pickles run code). */
qv_status qv_lora_read_peft(const char *dir, const qv_peft_base *base,
                            qv_lora **out, qv_err *err);

#endif
