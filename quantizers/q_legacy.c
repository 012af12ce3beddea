/* quantizers/q_legacy.c: placeholder, filled in by its owner */
