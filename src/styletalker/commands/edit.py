"""styletalker edit (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker edit is not implemented yet")
