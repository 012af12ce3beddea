/* edgec/convert.h: Hugging Face checkpoint (or GGUF) -> GGUF with plain types.
 *
 * ec_convert_run() opens the model (ec_model_open), writes the metadata
 * llama.cpp's converter writes (ec_model_write_gguf_kvs) and streams the
 * tensors one at a time into the GGUF writer: 2-D ".weight" tensors are cast
 * to the output type, vectors, norms and biases stay F32 (as
 * convert_hf_to_gguf.py does). Peak memory is one tensor as F32 plus its
 * output bytes. The output is atomic (io.h): on failure it is left absent or
 * unchanged.
 */
#ifndef EDGEC_CONVERT_H
#define EDGEC_CONVERT_H

#include <stdint.h>

#include "edgec/dtype.h"
#include "edgec/status.h"

struct ec_convert_opts {
    const char *input;    /* checkpoint folder or .gguf */
    const char *output;   /* destination .gguf */
    enum ec_dtype outtype; /* EC_F32, EC_F16 or EC_BF16 */
    /* optional, called after each tensor (from the calling thread) */
    void (*progress)(void *ctx, uint64_t tensors_done, uint64_t tensors_total,
                     uint64_t bytes_done);
    void *progress_ctx;
};

struct ec_convert_result {
    uint64_t n_tensors;
    uint64_t n_params;     /* elements over all tensors written */
    uint64_t data_bytes;   /* tensor bytes written (without padding) */
    uint64_t file_bytes;   /* size of the output file */
    uint32_t file_type;    /* general.file_type written (0 F32, 1 F16, 32 BF16) */
    double seconds;
    char model_name[256];  /* general.name source (folder name) */
};

/* llama_ftype number for a plain output type; false for others. */
bool ec_convert_file_type(enum ec_dtype outtype, uint32_t *file_type);

/* Storage type convert gives a tensor of this name and rank. */
enum ec_dtype ec_convert_tensor_type(const char *gguf_name, uint32_t n_dims, enum ec_dtype outtype);

enum ec_status ec_convert_run(const struct ec_convert_opts *opts, struct ec_convert_result *res,
                              struct ec_diag *d);

#endif
