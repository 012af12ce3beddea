/* formats/sp_model.c: placeholder, filled in by its owner */
