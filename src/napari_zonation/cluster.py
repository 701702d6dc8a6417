"""Placeholder: being written."""
def cluster_crystals(*a, **k):
    raise NotImplementedError
