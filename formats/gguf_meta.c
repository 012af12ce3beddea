/* formats/gguf_meta.c: placeholder, filled in by its owner */
