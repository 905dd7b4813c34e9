"""`digits serve`."""


def register(subparsers):
    subparsers.add_parser("serve", help="(not available yet)")
