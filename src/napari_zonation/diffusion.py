"""Placeholder: being written."""
def fit_diffusion(*a, **k):
    raise NotImplementedError
