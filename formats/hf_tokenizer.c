/* formats/hf_tokenizer.c: placeholder, filled in by its owner */
