/* config.json -> ec_hparams: the shared checkpoints, defaults, rope scaling, errors. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "edgec/io.h"
#include "edgec/model.h"

static enum ec_status parse(const char *json, struct ec_hparams *hp, struct ec_diag *d)
{
    ec_diag_clear(d);
    return ec_hparams_from_config_json(hp, json, strlen(json), "cfg/config.json", d);
}

Test(hf_config, stories260K)
{
    char *p = ec_test_shared("models/stories260K/config.json");
    char *text = NULL;
    size_t len = 0;
    struct ec_diag d = {0};
    cr_assert_eq(ec_read_file(p, 1 << 20, &text, &len, &d), EC_OK, "%s", d.msg);
    struct ec_hparams hp;
    cr_assert_eq(ec_hparams_from_config_json(&hp, text, len, p, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.family, EC_ARCH_LLAMA);
    cr_assert_str_eq(hp.gguf_arch, "llama");
    cr_assert_eq(hp.n_embd, 64);
    cr_assert_eq(hp.n_ff, 172);
    cr_assert_eq(hp.n_layer, 5);
    cr_assert_eq(hp.n_head, 8);
    cr_assert_eq(hp.n_head_kv, 4);
    cr_assert_eq(hp.head_dim, 8);
    cr_assert_eq(hp.n_vocab, 512);
    cr_assert_eq(hp.n_ctx_train, 512);
    float eps = 1e-5f;
    cr_assert(memcmp(&hp.norm_eps, &eps, 4) == 0); /* bits 0x3727c5ac as the converter writes */
    cr_assert_eq(hp.rope_theta, 10000.0f);
    cr_assert_eq(hp.rope_scaling, EC_ROPE_SCALING_NONE);
    cr_assert(hp.tied_embeddings);
    cr_assert(!hp.attn_qkv_bias && !hp.attn_out_bias && !hp.mlp_bias);
    free(text);
    free(p);
}

Test(hf_config, defaults_and_families)
{
    struct ec_hparams hp;
    struct ec_diag d = {0};
    cr_assert_eq(parse("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":128,\"intermediate_size\":256,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":1000,"
                       "\"use_sliding_window\":false,\"sliding_window\":4096}", &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.family, EC_ARCH_QWEN2);
    cr_assert_str_eq(hp.gguf_arch, "qwen2");
    cr_assert_eq(hp.n_head_kv, 4);
    cr_assert_eq(hp.head_dim, 32);
    cr_assert(hp.attn_qkv_bias && !hp.attn_out_bias);
    cr_assert_eq(hp.rope_theta, 10000.0f);
    cr_assert_eq(hp.norm_eps, 1e-6f);
    cr_assert(!hp.tied_embeddings);
    cr_assert_eq(hp.sliding_window, 0);
    cr_assert_eq(hp.n_ctx_train, 32768);

    cr_assert_eq(parse("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":128,\"intermediate_size\":256,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                       "\"vocab_size\":1000,\"sliding_window\":4096,\"head_dim\":null,\"rope_theta\":1e6}", &hp, &d),
                 EC_OK, "%s", d.msg);
    cr_assert_eq(hp.family, EC_ARCH_MISTRAL);
    cr_assert_str_eq(hp.gguf_arch, "llama");
    cr_assert_eq(hp.sliding_window, 4096);
    cr_assert_eq(hp.head_dim, 32);
    cr_assert_eq(hp.rope_theta, 1e6f);

    cr_assert_eq(parse("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":96,\"intermediate_size\":256,"
                       "\"num_hidden_layers\":2,\"num_attention_heads\":6,\"vocab_size\":1000,"
                       "\"attention_bias\":true,\"mlp_bias\":true,\"tie_word_embeddings\":false}", &hp, &d),
                 EC_OK, "%s", d.msg);
    cr_assert(hp.attn_qkv_bias && hp.attn_out_bias && hp.mlp_bias);
    cr_assert_eq(hp.head_dim, 16);
}

Test(hf_config, rope_scaling_variants)
{
    struct ec_hparams hp;
    struct ec_diag d = {0};
    const char *base = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":100,\"rope_scaling\":";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s{\"type\":\"linear\",\"factor\":4.0}}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.rope_scaling, EC_ROPE_SCALING_LINEAR);
    cr_assert_eq(hp.rope_factor, 4.0f);
    snprintf(buf, sizeof buf, "%s{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
             "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.rope_scaling, EC_ROPE_SCALING_LLAMA3);
    cr_assert_eq(hp.rope_factor, 8.0f);
    cr_assert_eq(hp.rope_orig_ctx, 8192);
    cr_assert_eq(hp.rope_low_freq_factor, 1.0f);
    cr_assert_eq(hp.rope_high_freq_factor, 4.0f);
    snprintf(buf, sizeof buf, "%s{\"type\":\"yarn\",\"factor\":2.0,\"original_max_position_embeddings\":4096}}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.rope_scaling, EC_ROPE_SCALING_YARN);
    cr_assert_eq(hp.rope_orig_ctx, 4096);
    snprintf(buf, sizeof buf, "%snull}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_OK, "%s", d.msg);
    cr_assert_eq(hp.rope_scaling, EC_ROPE_SCALING_NONE);
    cr_assert_eq(hp.rope_factor, 1.0f);
    snprintf(buf, sizeof buf, "%s{\"type\":\"dynamic\",\"factor\":2.0}}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_ERR_UNSUPPORTED);
    cr_assert(strstr(d.msg, "rope_scaling") && strstr(d.msg, "dynamic"), "%s", d.msg);
    snprintf(buf, sizeof buf, "%s{\"type\":\"llama3\",\"factor\":8.0}}", base);
    cr_assert_eq(parse(buf, &hp, &d), EC_ERR_FORMAT);
    cr_assert(strstr(d.msg, "original_max_position_embeddings"), "%s", d.msg);
}

Test(hf_config, errors_name_file_and_key)
{
    struct ec_hparams hp;
    struct ec_diag d = {0};
    cr_assert_eq(parse("{\"architectures\":[\"GPT2LMHeadModel\"]}", &hp, &d), EC_ERR_UNSUPPORTED);
    cr_assert(strstr(d.msg, "cfg/config.json") && strstr(d.msg, "GPT2LMHeadModel") &&
              strstr(d.msg, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"), "%s", d.msg);
    struct { const char *json; enum ec_status st; const char *needle; } cases[] = {
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64", EC_ERR_FORMAT, "at byte"},
        {"[]", EC_ERR_FORMAT, "top level"},
        {"{\"architectures\":[]}", EC_ERR_FORMAT, "'architectures'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":1,\"vocab_size\":1}", EC_ERR_FORMAT, "'hidden_size'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":0,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":1,\"vocab_size\":1}", EC_ERR_FORMAT, "'hidden_size'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\",\"intermediate_size\":1,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":1,\"vocab_size\":1}", EC_ERR_FORMAT, "'hidden_size'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":6,\"vocab_size\":1}", EC_ERR_FORMAT, "'num_attention_heads'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":8,\"num_key_value_heads\":3,\"vocab_size\":1}", EC_ERR_FORMAT, "'num_key_value_heads'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":8,\"vocab_size\":1.5}", EC_ERR_FORMAT, "'vocab_size'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":8,\"vocab_size\":1,\"tie_word_embeddings\":1}", EC_ERR_FORMAT, "'tie_word_embeddings'"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":8,\"vocab_size\":1,\"rms_norm_eps\":-1}", EC_ERR_FORMAT, "'rms_norm_eps'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(parse(cases[i].json, &hp, &d), cases[i].st, "case %zu: %s", i, d.msg);
        cr_assert(strstr(d.msg, "cfg/config.json") && strstr(d.msg, cases[i].needle), "case %zu: %s", i, d.msg);
    }
}
