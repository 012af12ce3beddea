/* quantizers/k_quants.c: placeholder, filled in by its owner */
