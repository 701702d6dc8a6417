"""Placeholder: being written."""
def describe_zoning(*a, **k):
    raise NotImplementedError
