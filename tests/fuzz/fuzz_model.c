/* tests/fuzz/fuzz_model.c — libFuzzer target for the model loader
 * (train/model_io.c on top of formats/gguf.c): any bytes give a model whose
 * shapes were all checked, or an error; never a crash or an over-read. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/ternary.h"
#include "train/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qv_model *m = NULL;
    qv_err e;
    if (qv_model_load_mem(data, size, "fuzz", &m, &e) == QV_OK) {
        /* touch every tensor the loader says it filled */
        const qv_model_config *c = &m->cfg;
        volatile float acc = 0;
        for (int32_t i = 0; i < c->vocab * c->dim; i += 97)
            acc += m->tok_emb[i];
        for (int l = 0; l < c->n_layers; l++)
            for (int k = 0; k < QV_LIN_COUNT; k++) {
                const qv_linear *lin = &m->layers[l].lin[k];
                acc += lin->scale +
                       (float)lin->packed[qv_ternary_bytes(lin->N, lin->K) / 4 - 1];
            }
        (void)acc;
        qv_model_free(&m);
    } else if (m || !e.msg[0]) {
        __builtin_trap(); /* an error must leave no model and say why */
    }
    return 0;
}
