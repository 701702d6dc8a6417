"""Placeholder: being written."""
def read_profiles(*a, **k):
    raise NotImplementedError
def read_sem_tiff(*a, **k):
    raise NotImplementedError
