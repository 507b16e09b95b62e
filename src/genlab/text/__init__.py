"""Language models and their generation procedures."""
