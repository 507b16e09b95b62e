"""End-to-end runs built from the layers below: pretraining first, more recipes later."""
