"""Alignment: from a language model to an assistant people prefer (the ChatGPT recipe).

``sft`` (supervised fine-tuning on demonstrations), ``reward`` (a reward model from comparisons),
``ppo`` (RLHF against the reward model) and ``dpo`` (direct preference optimisation); ``data``
holds the record formats they share. Each is a loss/step function plus a small entry that trains
through :class:`genlab.core.trainer.Trainer`.
"""
