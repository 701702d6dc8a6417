"""Placeholder: being written."""
class SyntheticSample: ...
def make_thin_section(*a, **k):
    raise NotImplementedError
