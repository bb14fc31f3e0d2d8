/* formats/peft_impl.h — what formats/peft.c (names, the in-memory adapter,
 * qvac's adapter GGUF) and formats/peft_folder.c (PEFT folders) share. Not
 * part of the API: include formats/peft.h. */
#ifndef QV_FORMATS_PEFT_IMPL_H
#define QV_FORMATS_PEFT_IMPL_H

#include "formats/peft.h"

/* More layers than train/model.c's qv_model_config_check allows. */
#define PF_MAX_LAYERS 1024

#define PF_PEFT_PREFIX "base_model.model.model.layers."
#define PF_PEFT_FORM PF_PEFT_PREFIX \
    "N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj}.lora_{A,B}.weight"

/* Allocates l's pointer tables for n_layers (l->n_layers is set). */
qv_status pf_alloc(qv_lora *l, int32_t n_layers, qv_err *err);

/* A decimal layer number without sign or leading zeros, below
 * PF_MAX_LAYERS; *p is moved past it. 0 when there is none. */
int pf_parse_layer(const char **p, int *layer);

/* Printable, bounded copy of a name from a file, for messages. */

/* Records one tensor's f32 values (rows x cols, row-major; takes v) as A
 * (b = 0) or B of layer / module, checking the shape against l->rank and
 * the module's N / K (base_dims: those are the base model's; else the
 * module's first tensor sets them), and that every value is finite.
 * `what` and `name` (the file's name of the tensor) go in messages. */
qv_status pf_put_tensor(qv_lora *l, int layer, int m, int b, float *v,
                        int64_t rows, int64_t cols, int base_dims,
                        const char *what, const char *name, qv_err *err);

/* Every targeted module has A and B in every layer; names the first gap
 * with the file's own names (peft: PEFT's, else GGUF's). */
qv_status pf_check_complete(const qv_lora *l, int peft, const char *what,
                            qv_err *err);

#endif
