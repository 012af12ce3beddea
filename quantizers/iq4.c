/* quantizers/iq4.c: placeholder, filled in by its owner */
