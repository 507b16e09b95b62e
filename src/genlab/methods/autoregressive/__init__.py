"""Autoregressive models: decoding one token at a time, and scoring given tokens; image GPT
(``image_gpt``) is the same model over a grid of image codes in raster order."""
