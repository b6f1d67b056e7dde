"""styletalker preprocess (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker preprocess is not implemented yet")
