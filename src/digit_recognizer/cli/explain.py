"""`digits explain`."""


def register(subparsers):
    subparsers.add_parser("explain", help="(not available yet)")
