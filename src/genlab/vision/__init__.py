"""Image models and their generation procedures, one file per family, plus sample grids."""
