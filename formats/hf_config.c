/* formats/hf_config.c: placeholder, filled in by its owner */
