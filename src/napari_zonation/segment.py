"""Placeholder: being written."""
def segment_crystals(*a, **k):
    raise NotImplementedError
def crystal_table(*a, **k):
    raise NotImplementedError
