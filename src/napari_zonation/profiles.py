"""Placeholder: being written."""
def line_profiles(*a, **k):
    raise NotImplementedError
def rim_profiles(*a, **k):
    raise NotImplementedError
