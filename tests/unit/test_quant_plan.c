/* Type plans of the quantization mixes against llama-quantize's choices
 * (golden/quantize/<M>.json), built from the tensor list of the F32 GGUF
 * (golden/convert/<M>.json) without any kernel or model file. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "edgec/io.h"
#include "edgec/quantize.h"

static cJSON *load_json(const char *rel)
{
    char *path = ec_test_shared(rel);
    if (!path)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_read_file(path, 64u << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(j, "cannot parse %s", path);
    free(text);
    free(path);
    return j;
}

static const cJSON *find_kv(const cJSON *kvs, const char *key)
{
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
        if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0)
            return cJSON_GetObjectItemCaseSensitive(kv, "value");
    }
    return NULL;
}

struct model_in {
    cJSON *convert, *quant;
    struct ec_plan_model m;
    size_t n;
    struct ec_plan_tensor_in *t;
    size_t n_imat;
    const char **imat_names;
};

static bool load_model(struct model_in *mi, const char *model)
{
    char rel[256];
    memset(mi, 0, sizeof *mi);
    snprintf(rel, sizeof rel, "golden/convert/%s.json", model);
    mi->convert = load_json(rel);
    if (!mi->convert)
        return false;
    snprintf(rel, sizeof rel, "golden/quantize/%s.json", model);
    mi->quant = load_json(rel);
    if (!mi->quant)
        return false;
    const cJSON *f32 = cJSON_GetObjectItem(cJSON_GetObjectItem(mi->convert, "files"), "F32");
    const cJSON *kvs = cJSON_GetObjectItem(f32, "kv");
    const cJSON *tens = cJSON_GetObjectItem(f32, "tensors");
    cr_assert_not_null(tens);
    mi->m.arch = find_kv(kvs, "general.architecture")->valuestring;
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", mi->m.arch);
    mi->m.n_layer = (uint32_t)find_kv(kvs, key)->valuedouble;
    snprintf(key, sizeof key, "%s.attention.head_count", mi->m.arch);
    mi->m.n_head = (uint32_t)find_kv(kvs, key)->valuedouble;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", mi->m.arch);
    mi->m.n_head_kv = (uint32_t)find_kv(kvs, key)->valuedouble;
    mi->n = (size_t)cJSON_GetArraySize(tens);
    mi->t = calloc(mi->n, sizeof *mi->t);
    for (size_t i = 0; i < mi->n; i++) {
        const cJSON *t = cJSON_GetArrayItem(tens, (int)i);
        mi->t[i].name = cJSON_GetObjectItem(t, "name")->valuestring;
        cr_assert(ec_dtype_from_name(cJSON_GetObjectItem(t, "type")->valuestring, &mi->t[i].type));
        const cJSON *ne = cJSON_GetObjectItem(t, "ne");
        mi->t[i].n_dims = (uint32_t)cJSON_GetArraySize(ne);
        for (int k = 0; k < 4; k++)
            mi->t[i].ne[k] = k < (int)mi->t[i].n_dims
                                 ? (uint64_t)cJSON_GetArrayItem(ne, k)->valuedouble
                                 : 1;
    }
    const cJSON *ents = cJSON_GetObjectItem(cJSON_GetObjectItem(mi->quant, "imatrix"), "entries");
    mi->n_imat = (size_t)cJSON_GetArraySize(ents);
    mi->imat_names = calloc(mi->n_imat + 1, sizeof *mi->imat_names);
    for (size_t i = 0; i < mi->n_imat; i++)
        mi->imat_names[i] =
            cJSON_GetObjectItem(cJSON_GetArrayItem(ents, (int)i), "name")->valuestring;
    return true;
}

static void free_model(struct model_in *mi)
{
    free(mi->t);
    free(mi->imat_names);
    cJSON_Delete(mi->convert);
    cJSON_Delete(mi->quant);
}

static struct ec_plan_opts opts_for(const struct model_in *mi, const cJSON *run)
{
    struct ec_plan_opts o = {.output_tensor_type = EC_DTYPE_UNSET,
                             .token_embedding_type = EC_DTYPE_UNSET};
    cr_assert(ec_ftype_from_name(cJSON_GetObjectItem(run, "ftype")->valuestring, &o.ftype));
    if (cJSON_IsTrue(cJSON_GetObjectItem(run, "imatrix"))) {
        o.has_imatrix = true;
        o.n_imatrix_names = mi->n_imat;
        o.imatrix_names = mi->imat_names;
    }
    return o;
}

/* "... tensor cols 64 x 32 are not divisible by 256, required for q4_K - using
 * fallback quantization q5_0" -> fields; false for other lines */
static bool parse_fallback(const char *line, unsigned long *cols, unsigned long *rows, char *from,
                           char *to)
{
    const char *p = strstr(line, "tensor cols ");
    if (!p)
        return false;
    unsigned long qk;
    if (sscanf(p, "tensor cols %lu x %lu are not divisible by %lu, required for %15s - using "
                  "fallback quantization %15s",
               cols, rows, &qk, from, to) != 5)
        return false;
    return true;
}

static int run_model(const char *model, bool *skipped)
{
    struct model_in mi;
    if (!load_model(&mi, model)) {
        *skipped = true;
        return 0;
    }
    int n_runs = 0;
    const cJSON *run;
    cJSON_ArrayForEach(run, cJSON_GetObjectItem(mi.quant, "runs"))
    {
        const char *label = cJSON_GetObjectItem(run, "label")->valuestring;
        struct ec_plan_opts o = opts_for(&mi, run);
        struct ec_quant_plan p;
        struct ec_diag d;
        ec_diag_clear(&d);
        cr_assert_eq(ec_quant_plan_build(&p, &mi.m, mi.t, mi.n, &o, &d), EC_OK, "%s %s: %s",
                     model, label, d.msg);
        cr_assert_eq(p.n, mi.n);
        const cJSON *tens = cJSON_GetObjectItem(run, "tensors");
        const int exit_code = cJSON_GetObjectItem(run, "exit_code")->valueint;
        if (exit_code == 0) {
            cr_assert_not(p.llama_refuses, "%s %s: plan says llama refuses", model, label);
            cr_assert_eq((size_t)cJSON_GetArraySize(tens), p.n, "%s %s", model, label);
            for (size_t i = 0; i < p.n; i++) {
                const cJSON *gt = cJSON_GetArrayItem(tens, (int)i);
                const char *gname = cJSON_GetObjectItem(gt, "name")->valuestring;
                const char *gtype = cJSON_GetObjectItem(gt, "type")->valuestring;
                cr_assert_str_eq(p.entries[i].name, gname, "%s %s: tensor #%zu", model, label,
                                 i);
                cr_assert_str_eq(ec_dtype_name(p.entries[i].type), gtype,
                                 "%s %s: tensor '%s': edgec %s, llama-quantize %s", model, label,
                                 gname, ec_dtype_name(p.entries[i].type), gtype);
                cr_assert_eq(p.entries[i].dst_bytes,
                             (uint64_t)cJSON_GetObjectItem(gt, "n_bytes")->valuedouble,
                             "%s %s: '%s' size", model, label, gname);
            }
            /* the fallbacks, in order, as llama.cpp printed them */
            size_t k = 0;
            const cJSON *msg;
            cJSON_ArrayForEach(msg, cJSON_GetObjectItem(run, "fallback_messages"))
            {
                unsigned long cols, rows;
                char from[16], to[16];
                if (!parse_fallback(msg->valuestring, &cols, &rows, from, to))
                    continue;
                while (k < p.n && !(p.entries[k].flags & EC_PLAN_FALLBACK))
                    k++;
                cr_assert_lt(k, p.n, "%s %s: fewer fallbacks than llama.cpp", model, label);
                const struct ec_plan_entry *e = &p.entries[k];
                cr_assert_eq(e->ne[0], cols, "%s %s: fallback '%s'", model, label, e->name);
                cr_assert_eq(e->ne[1], rows, "%s %s: fallback '%s'", model, label, e->name);
                cr_assert(strcasecmp(ec_dtype_name(e->wanted), from) == 0,
                          "%s %s: '%s' wanted %s, llama.cpp %s", model, label, e->name,
                          ec_dtype_name(e->wanted), from);
                cr_assert(strcasecmp(ec_dtype_name(e->type), to) == 0, "%s %s: '%s'", model,
                          label, e->name);
                k++;
            }
            for (; k < p.n; k++)
                cr_assert_not(p.entries[k].flags & EC_PLAN_FALLBACK,
                              "%s %s: extra fallback '%s'", model, label, p.entries[k].name);
            cr_assert_eq(p.n_warnings, p.n_fallback);
        } else {
            /* llama-quantize refused: edgec falls back to F16 for the rows no
             * 32-block fits and says so, naming the tensor */
            cr_assert(p.llama_refuses, "%s %s: llama refused but the plan does not say so",
                      model, label);
            const enum ec_dtype base = ec_ftype_base_type(o.ftype);
            size_t n_refused = 0;
            for (size_t i = 0; i < p.n; i++) {
                const struct ec_plan_entry *e = &p.entries[i];
                if (e->n_dims < 2) {
                    cr_assert_eq(e->type, EC_F32, "%s %s: '%s'", model, label, e->name);
                } else if (e->ne[0] % 32 != 0) {
                    n_refused++;
                    cr_assert_eq(e->type, EC_F16, "%s %s: '%s' is %s", model, label, e->name,
                                 ec_dtype_name(e->type));
                    cr_assert(e->flags & EC_PLAN_LLAMA_REFUSES);
                    bool named = false;
                    for (size_t w = 0; w < p.n_warnings; w++)
                        if (strstr(p.warnings[w], e->name) && strstr(p.warnings[w], "F16"))
                            named = true;
                    cr_assert(named, "%s %s: no warning names '%s'", model, label, e->name);
                } else if (strcmp(e->name, "token_embd.weight") == 0) {
                    /* tied output: Q6_K, which falls back to Q8_0 on 64 columns
                     * (llama.cpp printed that fallback before refusing) */
                    bool printed = false;
                    const cJSON *msg;
                    cJSON_ArrayForEach(msg, cJSON_GetObjectItem(run, "fallback_messages"))
                        printed |= strstr(msg->valuestring, "using fallback quantization q8_0") != NULL;
                    cr_assert_eq(e->type, printed || base == EC_Q8_0 ? EC_Q8_0 : EC_Q6_K,
                                 "%s %s: '%s' is %s", model, label, e->name,
                                 ec_dtype_name(e->type));
                } else {
                    cr_assert_eq(e->type, base, "%s %s: '%s' is %s", model, label, e->name,
                                 ec_dtype_name(e->type));
                }
            }
            cr_assert_gt(n_refused, 0);
        }
        ec_quant_plan_release(&p);
        n_runs++;
    }
    free_model(&mi);
    return n_runs;
}

Test(quant_plan, every_golden_run_of_stories260K_matches_llama_quantize)
{
    bool skipped = false;
    int n = run_model("stories260K", &skipped);
    if (!skipped)
        cr_assert_eq(n, 16);
}

Test(quant_plan, every_golden_run_of_stories_student_256_matches_llama_quantize)
{
    bool skipped = false;
    int n = run_model("stories-student-256", &skipped);
    if (!skipped)
        cr_assert_eq(n, 16);
}

/* A small synthetic llama: 8 layers, 256 wide, GQA 4 */
static size_t synth(struct ec_plan_tensor_in *t, char names[][48], bool with_output)
{
    size_t n = 0;
    const char *kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                           "ffn_down", "attn_norm"};
    for (int l = 7; l >= 0; l--) {
        for (int k = 0; k < 8; k++) {
            snprintf(names[n], 48, "blk.%d.%s.weight", l, kinds[k]);
            t[n] = (struct ec_plan_tensor_in){names[n], EC_F32, k == 7 ? 1u : 2u,
                                              {k == 6 ? 512 : 256, k == 7 ? 1 : 256, 1, 1}};
            n++;
        }
    }
    snprintf(names[n], 48, "token_embd.weight");
    t[n] = (struct ec_plan_tensor_in){names[n], EC_F32, 2, {256, 1000, 1, 1}};
    n++;
    if (with_output) {
        snprintf(names[n], 48, "output.weight");
        t[n] = (struct ec_plan_tensor_in){names[n], EC_F32, 2, {256, 1000, 1, 1}};
        n++;
    }
    return n;
}

static const struct ec_plan_entry *entry(const struct ec_quant_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->entries[i].name, name) == 0)
            return &p->entries[i];
    cr_assert_fail("no tensor '%s' in the plan", name);
    return NULL;
}

Test(quant_plan, orders_tensors_like_the_llama_cpp_weights_map)
{
    struct ec_plan_tensor_in t[80];
    char names[80][48];
    size_t n = synth(t, names, true);
    struct ec_plan_model m = {"llama", 8, 32, 8, 0};
    struct ec_plan_opts o = {.ftype = EC_FTYPE_MOSTLY_Q4_K_M,
                             .output_tensor_type = EC_DTYPE_UNSET,
                             .token_embedding_type = EC_DTYPE_UNSET};
    struct ec_quant_plan p;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_str_eq(p.entries[0].name, "output.weight");
    cr_assert_str_eq(p.entries[1].name, "token_embd.weight");
    cr_assert_str_eq(p.entries[2].name, "blk.0.attn_k.weight");
    cr_assert_str_eq(p.entries[p.n - 1].name, "blk.7.ffn_up.weight");
    cr_assert_lt(ec_weight_name_cmp("blk.2.x", "blk.10.x"), 0);
    /* untied: output Q6_K, token_embd keeps the base type */
    cr_assert_eq(entry(&p, "output.weight")->type, EC_Q6_K);
    cr_assert_eq(entry(&p, "token_embd.weight")->type, EC_Q4_K);
    /* use_more_bits(i, 8): layers 0, 3, 6, 7 */
    const int more[8] = {1, 0, 0, 1, 0, 0, 1, 1};
    for (int l = 0; l < 8; l++) {
        char nm[48];
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);
        cr_assert_eq(entry(&p, nm)->type, more[l] ? EC_Q6_K : EC_Q4_K, "%s", nm);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        cr_assert_eq(entry(&p, nm)->type, more[l] ? EC_Q6_K : EC_Q4_K, "%s", nm);
    }
    cr_assert_eq(entry(&p, "blk.0.attn_norm.weight")->type, EC_F32);
    cr_assert_not(entry(&p, "blk.0.attn_norm.weight")->flags & EC_PLAN_QUANTIZE);
    ec_quant_plan_release(&p);

    /* n_gqa >= 4 puts Q2_K's attn_v at Q4_K */
    o.ftype = EC_FTYPE_MOSTLY_Q2_K;
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(entry(&p, "blk.3.attn_v.weight")->type, EC_Q4_K);
    cr_assert_eq(entry(&p, "blk.3.ffn_down.weight")->type, EC_Q3_K);
    cr_assert_eq(entry(&p, "blk.3.attn_output.weight")->type, EC_Q3_K);
    cr_assert_eq(entry(&p, "blk.3.attn_q.weight")->type, EC_Q2_K);
    ec_quant_plan_release(&p);
}

Test(quant_plan, user_overrides_apply_after_the_mix)
{
    struct ec_plan_tensor_in t[80];
    char names[80][48];
    size_t n = synth(t, names, true);
    struct ec_plan_model m = {"llama", 8, 32, 8, 0};
    const struct ec_type_override ov[] = {
        {"attn_q", EC_Q8_0},           /* first match wins */
        {"blk\\.1\\.attn_q", EC_Q5_0}, /* never reached */
        {"^blk\\.2\\.ffn_down\\.weight$", EC_Q4_0},
    };
    struct ec_plan_opts o = {.ftype = EC_FTYPE_MOSTLY_Q4_K_M,
                             .output_tensor_type = EC_Q8_0,
                             .token_embedding_type = EC_Q4_0,
                             .n_overrides = 3,
                             .overrides = ov};
    struct ec_quant_plan p;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(entry(&p, "blk.1.attn_q.weight")->type, EC_Q8_0);
    cr_assert(entry(&p, "blk.1.attn_q.weight")->flags & EC_PLAN_OVERRIDDEN);
    cr_assert_eq(entry(&p, "blk.2.ffn_down.weight")->type, EC_Q4_0);
    cr_assert_eq(entry(&p, "blk.3.ffn_down.weight")->type, EC_Q6_K);
    cr_assert_eq(entry(&p, "output.weight")->type, EC_Q8_0);
    cr_assert_eq(entry(&p, "token_embd.weight")->type, EC_Q4_0);
    ec_quant_plan_release(&p);

    /* pure: the base type everywhere */
    o = (struct ec_plan_opts){.ftype = EC_FTYPE_MOSTLY_Q4_K_M,
                              .pure = true,
                              .leave_output_tensor = true,
                              .output_tensor_type = EC_DTYPE_UNSET,
                              .token_embedding_type = EC_DTYPE_UNSET};
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(entry(&p, "blk.0.attn_v.weight")->type, EC_Q4_K);
    cr_assert_eq(entry(&p, "token_embd.weight")->type, EC_Q4_K);
    cr_assert_eq(entry(&p, "output.weight")->type, EC_F32); /* left alone */
    cr_assert_not(entry(&p, "output.weight")->flags & EC_PLAN_QUANTIZE);
    ec_quant_plan_release(&p);

    /* a user type that does not fit the row falls back, with a warning */
    const struct ec_type_override bad[] = {{"ffn_down", EC_Q4_K}};
    t[6].ne[0] = 96; /* blk.7.ffn_down */
    o = (struct ec_plan_opts){.ftype = EC_FTYPE_MOSTLY_Q8_0,
                              .n_overrides = 1,
                              .overrides = bad,
                              .output_tensor_type = EC_DTYPE_UNSET,
                              .token_embedding_type = EC_DTYPE_UNSET};
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(entry(&p, "blk.7.ffn_down.weight")->type, EC_Q5_0);
    cr_assert_eq(p.n_warnings, 1);
    cr_assert(strstr(p.warnings[0], "blk.7.ffn_down.weight"));
    cr_assert_not(p.llama_refuses);
    ec_quant_plan_release(&p);
}

Test(quant_plan, imatrix_include_and_exclude_select_tensors)
{
    struct ec_plan_tensor_in t[80];
    char names[80][48];
    size_t n = synth(t, names, false);
    struct ec_plan_model m = {"llama", 8, 32, 8, 0};
    const char *imat[] = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.ffn_down.weight",
                          "blk.1.attn_k.weight"};
    const char *exc[] = {"attn_k"};
    const char *inc[] = {"ffn_down", "attn_"};
    struct ec_plan_opts o = {.ftype = EC_FTYPE_MOSTLY_Q4_0,
                             .output_tensor_type = EC_DTYPE_UNSET,
                             .token_embedding_type = EC_DTYPE_UNSET,
                             .has_imatrix = true,
                             .n_imatrix_names = 4,
                             .imatrix_names = imat,
                             .n_include = 1,
                             .include_weights = inc,
                             .n_exclude = 1,
                             .exclude_weights = exc};
    struct ec_quant_plan p;
    struct ec_diag d;
    ec_diag_clear(&d);
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(p.n_imatrix_entries, 2);
    cr_assert(entry(&p, "blk.0.ffn_down.weight")->flags & EC_PLAN_IMATRIX);
    cr_assert_not(entry(&p, "blk.0.attn_q.weight")->flags & EC_PLAN_IMATRIX);
    cr_assert_not(entry(&p, "blk.1.attn_k.weight")->flags & EC_PLAN_IMATRIX);
    cr_assert_not(entry(&p, "blk.2.ffn_down.weight")->flags & EC_PLAN_IMATRIX); /* no entry */
    /* with an imatrix, Q4_0 guards ffn_down of the first n_layer/8 layers with Q4_1 */
    cr_assert_eq(entry(&p, "blk.0.ffn_down.weight")->type, EC_Q4_1);
    cr_assert_eq(entry(&p, "blk.1.ffn_down.weight")->type, EC_Q4_0);
    ec_quant_plan_release(&p);

    /* nothing left after the filters: as without an imatrix */
    o.n_include = 2;
    o.include_weights = inc;
    o.n_exclude = 0;
    const char *none[] = {"nomatch"};
    o.include_weights = none;
    o.n_include = 1;
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(p.n_imatrix_entries, 0);
    cr_assert_eq(entry(&p, "blk.0.ffn_down.weight")->type, EC_Q4_0);
    ec_quant_plan_release(&p);

    /* a bad regex is a usage error naming it */
    const char *badre[] = {"(unclosed"};
    o.include_weights = badre;
    cr_assert_eq(ec_quant_plan_build(&p, &m, t, n, &o, &d), EC_ERR_ARG);
    cr_assert(strstr(d.msg, "(unclosed"), "%s", d.msg);
}

Test(quant_plan, ftype_names_and_numbers)
{
    enum ec_ftype f;
    cr_assert(ec_ftype_from_name("q4_k_m", &f));
    cr_assert_eq(f, 15);
    cr_assert(ec_ftype_from_name("Q4_K", &f));
    cr_assert_eq(f, EC_FTYPE_MOSTLY_Q4_K_M);
    cr_assert(ec_ftype_from_name("bf16", &f));
    cr_assert_eq(f, 32);
    cr_assert(ec_ftype_from_name("Q8_0", &f));
    cr_assert_eq(f, 7);
    cr_assert(ec_ftype_from_name("IQ4_XS", &f));
    cr_assert_eq(ec_ftype_base_type(f), EC_IQ4_XS);
    cr_assert_not(ec_ftype_from_name("Q7_K", &f));
    cr_assert_str_eq(ec_ftype_name(EC_FTYPE_MOSTLY_Q3_K_L), "Q3_K_L");
}
