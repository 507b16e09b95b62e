"""genlab: generative AI end to end on PyTorch, and measured.

The package is layered (an import only points down): ``core`` (trainer, checkpoints, logging),
``data`` (built-in data), ``text`` and ``vision`` (models and their generation procedures), the
techniques built on them, ``recipes``, ``serve`` and the ``cli``. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
