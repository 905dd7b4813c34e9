"""`digits evaluate`."""


def register(subparsers):
    subparsers.add_parser("evaluate", help="(not available yet)")
