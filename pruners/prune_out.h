/* pruners/prune_out.h: output side of `edgec prune` (GGUF or HF folder) and
 * the pieces shared by prune_run.c and structured.c (not public). */
#ifndef EDGEC_PRUNERS_PRUNE_OUT_H
#define EDGEC_PRUNERS_PRUNE_OUT_H

#include <stdbool.h>
#include <stdint.h>

#include "edgec/gguf.h"
#include "edgec/model.h"
#include "edgec/prune_run.h"
#include "edgec/safetensors.h"

/* One tensor to write: out name, shape, type and where it comes from. */
struct ec_pout_entry {
    const struct ec_model_tensor *src; /* borrowed */
    char name[128];                    /* GGUF name in the output */
    int src_layer;                     /* -1 outside blocks */
    int lin;                           /* enum ec_calib_lin or -1 */
    uint32_t n_dims;
    uint64_t ne[2];                    /* innermost first (cols, rows) */
    enum ec_dtype type;                /* written type */
    bool skip;                         /* HF output: derived from config.json, not stored */
};

struct ec_pout {
    bool gguf;
    const struct ec_model *m;
    struct ec_hparams hp;              /* output hyper-parameters */
    struct ec_gguf_writer *gw;
    struct ec_st_writer *sw;
    char *dir;                         /* HF output folder */
    size_t n, cap;
    struct ec_pout_entry *e;
    size_t next;                       /* entry receiving data */
    void *buf;                         /* conversion scratch */
    size_t buf_bytes;
    bool rope_interleave;              /* GGUF: q/k rows from HF rotate_half to llama.cpp's
                                          interleaved layout (a qwen2 model written as llama) */
};

/* Open the writer for o->output (GGUF when it ends in ".gguf"). */
enum ec_status ec_pout_open(struct ec_pout *p, const struct ec_model *m,
                            const struct ec_hparams *hp_out, const struct ec_prune_opts *o,
                            struct ec_diag *d);
/* Declare a tensor (after open, before begin). */
enum ec_status ec_pout_add(struct ec_pout *p, const struct ec_model_tensor *src, const char *name,
                           int src_layer, int lin, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                           enum ec_dtype outtype, struct ec_diag *d);
enum ec_status ec_pout_begin(struct ec_pout *p, struct ec_diag *d);
/* Write the next declared tensor from F32 values in GGUF layout. */
enum ec_status ec_pout_write_f32(struct ec_pout *p, float *f32, struct ec_diag *d);
/* Commit (model file; then config.json and tokenizer files for HF). */
enum ec_status ec_pout_commit(struct ec_pout *p, const struct ec_prune_opts *o, struct ec_diag *d);
void ec_pout_release(struct ec_pout *p);

/* The type a written tensor takes. */
enum ec_dtype ec_pout_type(const struct ec_pout *p, const struct ec_model_tensor *src,
                           uint32_t n_dims, enum ec_dtype outtype);

/* Structured pruning (pruners/structured.c). */
enum ec_status ec_prune_structured(const struct ec_prune_opts *o, struct ec_model *m,
                                   struct ec_prune_result *r, struct ec_diag *d);

/* Append a tensor report (name copied). */
struct ec_prune_tensor_stat *ec_prune_result_add(struct ec_prune_result *r, const char *name,
                                                 int src_layer, struct ec_diag *d);

#endif
