/* formats/safetensors.c: placeholder, filled in by its owner */
