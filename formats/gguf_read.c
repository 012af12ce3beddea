/* formats/gguf_read.c: placeholder, filled in by its owner */
