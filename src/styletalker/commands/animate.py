"""styletalker animate (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker animate is not implemented yet")
