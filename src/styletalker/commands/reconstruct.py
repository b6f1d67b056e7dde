"""styletalker reconstruct (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker reconstruct is not implemented yet")
