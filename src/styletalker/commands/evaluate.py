"""styletalker evaluate (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker evaluate is not implemented yet")
