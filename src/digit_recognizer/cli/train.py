"""`digits train`."""


def register(subparsers):
    subparsers.add_parser("train", help="(not available yet)")
