"""Autoregressive models: decoding one token at a time, and scoring given tokens."""
