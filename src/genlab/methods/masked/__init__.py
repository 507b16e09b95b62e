"""Masked iterative decoding: predict every hidden token at once, keep the confident ones, hide
and predict the rest again. Mask-predict for text (Ghazvininejad et al., 2019) and MaskGIT for
image tokens (Chang et al., 2022), which decides tokens on a cosine schedule and never re-masks
one it kept.

- ``masking``: the training mask (a uniform number of hidden tokens) and the re-masking schedule;
- ``mask_predict``: the iterative decoding loop over any ``tokens -> log-probs`` predictor;
- ``cmlm``: the conditional masked LM's batches, loss, translation with length candidates, and
  its ``cmlm`` model kind;
- ``maskgit``: a bidirectional transformer over VQ codes, the cosine-masked loss, N-step
  confident decoding with classifier-free guidance, the ``maskgit`` kind.
"""
