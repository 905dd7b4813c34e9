"""`digits export`."""


def register(subparsers):
    subparsers.add_parser("export", help="(not available yet)")
