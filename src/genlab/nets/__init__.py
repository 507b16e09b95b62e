"""Networks only: each an ``nn.Module`` with its config dataclass beside it. No losses, no
sampling, no training: the methods in ``genlab.methods`` and the techniques above use them."""
