"""Masked iterative decoding: predict every hidden token at once, keep the confident ones, hide
and predict the rest again. Mask-predict for text (Ghazvininejad et al., 2019) lives here; the
loop and the masking schedule assume no modality, so MaskGIT (Chang et al., 2022) reuses them
for image tokens.

- ``masking``: the training mask (a uniform number of hidden tokens) and the re-masking schedule;
- ``mask_predict``: the iterative decoding loop over any ``tokens -> log-probs`` predictor;
- ``cmlm``: the conditional masked LM's batches, loss, translation with length candidates, and
  its ``cmlm`` model kind.
"""
