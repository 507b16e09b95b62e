"""Adapters: one frozen base model, a small trained module per task.

LoRA (Hu et al., 2021), bottleneck adapters (Houlsby et al., 2019) and prompt tuning (Lester et
al., 2021) injected into any network by layer name (``inject``), merged and unmerged exactly,
combined by weight or chosen per batch row (``rows``), and saved alone (``adapted``; PEFT's
folder format in ``peft_format``).
"""
