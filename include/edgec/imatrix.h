/* edgec/imatrix.h: llama.cpp's legacy importance-matrix file (.dat), as
 * written by llama-imatrix at llama.cpp c392e509 (save_imatrix) and read by
 * llama-quantize (load_imatrix). Little-endian:
 *
 *   i32 n_entries                                       (>= 1)
 *   n_entries x { i32 name_len; char name[name_len] (no NUL);
 *                 i32 ncall; i32 nval; f32 values[nval] }
 *   optional trailer: i32 last_call (chunks processed);
 *                     i32 dataset_len; char dataset[dataset_len]
 *
 * values[i] = sum over calibration tokens of x_i^2 / count_i * ncall, so the
 * importance used for quantizing is values[i] / ncall (llama-quantize divides
 * in float when ncall > 0). A later entry with the same name replaces an
 * earlier one, as in llama-quantize's map.
 *
 * The reader checks every count and length against the file size before it
 * allocates; errors name the file, the entry and the byte offset.
 */
#ifndef EDGEC_IMATRIX_H
#define EDGEC_IMATRIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgec/status.h"

struct ec_imatrix_entry {
    char *name;       /* owned, NUL-terminated tensor name */
    int32_t ncall;    /* times the weight was used during calibration */
    uint32_t nval;    /* values (= row length of the weight, x experts) */
    float *values;    /* [nval] owned, as stored (not divided by ncall) */
    uint64_t offset;  /* file offset of the entry (messages) */
};

struct ec_imatrix {
    char *path;                     /* owned copy (messages) */
    size_t n;                       /* entries in file order (duplicates removed) */
    struct ec_imatrix_entry *entries;
    bool has_trailer;               /* last_call/dataset present */
    int32_t last_call;              /* chunks processed (0 when no trailer) */
    char *dataset;                  /* owned, "" when no trailer */
};

/* Read a .dat file. EC_ERR_IO when it cannot be read, EC_ERR_FORMAT when it
 * is malformed, EC_ERR_NUMERIC for a NaN/Inf value. On failure *im is zeroed. */
enum ec_status ec_imatrix_load(struct ec_imatrix *im, const char *path, struct ec_diag *d);
/* Parse from memory; `name` is used in messages. */
enum ec_status ec_imatrix_parse(struct ec_imatrix *im, const uint8_t *buf, uint64_t n,
                                const char *name, struct ec_diag *d);
/* Write in the same layout (with the trailer), atomically. */
enum ec_status ec_imatrix_save(const struct ec_imatrix *im, const char *path, struct ec_diag *d);
void ec_imatrix_release(struct ec_imatrix *im);

/* Entry by tensor name, or NULL. */
const struct ec_imatrix_entry *ec_imatrix_find(const struct ec_imatrix *im, const char *name);
/* The importance weights as llama-quantize passes them to the quantizer:
 * dst[i] = values[i] / ncall (values unchanged when ncall <= 0). */
void ec_imatrix_entry_weights(const struct ec_imatrix_entry *e, float *dst);

#endif
