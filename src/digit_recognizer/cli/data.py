"""`digits data`."""


def register(subparsers):
    subparsers.add_parser("data", help="(not available yet)")
