/* quantizers/traits.c: placeholder, filled in by its owner */
