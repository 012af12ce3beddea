/* formats/vocab.c: placeholder, filled in by its owner */
