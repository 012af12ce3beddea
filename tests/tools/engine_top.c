/* edgec-engine-top: top-1 next-token predictions of edgec's engine on a GGUF
 * or checkpoint, for scripts/interop_prune.sh.
 *
 *   edgec-engine-top MODEL TEXT_FILE N_TOKENS
 *
 * Tokenizes TEXT_FILE with BOS, evaluates the first N_TOKENS in one batch and
 * prints one JSON object: {"bos_added": B, "tokens": [...], "top": [...],
 * "top_logit": [...], "margin": [...]} where top[t] is the argmax of the
 * logits after tokens[0..t] (lowest id on ties), top_logit[t] its value and
 * margin[t] its lead over the runner-up; bos_added says whether tokens[0] is
 * the BOS the vocabulary's add_bos put there (the rest is the text's
 * tokenization). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgec/engine.h"
#include "edgec/io.h"
#include "edgec/model.h"
#include "edgec/tokenizer.h"

/* argmax of row[0..nv) (lowest id on ties); *second: the largest other value */
static uint32_t row_top(const float *row, uint32_t nv, float *second)
{
    uint32_t best = 0;
    for (uint32_t j = 1; j < nv; j++)
        if (row[j] > row[best])
            best = j;
    if (second) {
        *second = -INFINITY;
        for (uint32_t j = 0; j < nv; j++)
            if (j != best && row[j] > *second)
                *second = row[j];
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL TEXT_FILE N_TOKENS\n", argv[0]);
        return 2;
    }
    struct ec_diag d;
    ec_diag_clear(&d);
    struct ec_model m;
    struct ec_tokenizer *tk = NULL;
    struct ec_engine *e = NULL;
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    int rc = 3;
    if (ec_model_open(&m, argv[1], &d) != EC_OK) {
        fprintf(stderr, "%s\n", d.msg);
        return 3;
    }
    long n = strtol(argv[3], NULL, 10);
    if (ec_read_file(argv[2], 1u << 30, &text, &len, &d) != EC_OK ||
        ec_tokenizer_new(&tk, &m.vocab, &d) != EC_OK ||
        ec_tokenizer_encode(tk, text, len, true, false, &ids, &n_ids, &d) != EC_OK)
        goto out;
    if (n <= 0 || (size_t)n > n_ids)
        n = (long)n_ids;
    struct ec_engine_opts eo;
    ec_engine_opts_init(&eo);
    eo.n_ctx = (uint32_t)n;
    if (ec_engine_new(&e, &m, &eo, &d) != EC_OK)
        goto out;
    uint32_t nv = ec_engine_n_vocab(e);
    logits = malloc((size_t)n * nv * sizeof(float));
    if (!logits || ec_engine_eval(e, ids, n, logits, 0, &d) != EC_OK)
        goto out;
    const bool bos_added = ec_vocab_adds_bos(&m.vocab) && n_ids > 0 && ids[0] == m.vocab.bos_id;
    printf("{\"bos_added\": %s, \"tokens\": [", bos_added ? "true" : "false");
    for (long t = 0; t < n; t++)
        printf("%s%d", t ? ", " : "", ids[t]);
    printf("], \"top\": [");
    for (long t = 0; t < n; t++)
        printf("%s%u", t ? ", " : "", row_top(logits + (size_t)t * nv, nv, NULL));
    printf("], \"top_logit\": [");
    for (long t = 0; t < n; t++) {
        const float *row = logits + (size_t)t * nv;
        printf("%s%.7g", t ? ", " : "", (double)row[row_top(row, nv, NULL)]);
    }
    printf("], \"margin\": [");
    for (long t = 0; t < n; t++) {
        const float *row = logits + (size_t)t * nv;
        float second;
        uint32_t best = row_top(row, nv, &second);
        printf("%s%.6f", t ? ", " : "", (double)(row[best] - second));
    }
    printf("]}\n");
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "%s\n", d.msg);
    free(logits);
    free(ids);
    free(text);
    ec_engine_free(e);
    ec_tokenizer_free(tk);
    ec_model_close(&m);
    return rc;
}
