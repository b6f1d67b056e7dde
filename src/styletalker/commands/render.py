"""styletalker render (not implemented yet)."""


def add_arguments(p):
    pass


def run(args):
    raise NotImplementedError("styletalker render is not implemented yet")
