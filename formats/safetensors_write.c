/* formats/safetensors_write.c: placeholder, filled in by its owner */
