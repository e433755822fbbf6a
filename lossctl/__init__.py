"""lossctl: check that a custom torch.autograd.Function is right, say why not, and time it."""

__version__ = "0.1.0"
