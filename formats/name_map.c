/* formats/name_map.c: placeholder, filled in by its owner */
