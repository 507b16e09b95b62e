"""Experiments: one file per claim, each one command that writes a markdown table and a figure
into ``docs/experiments/`` (``genlab experiment --help``)."""
