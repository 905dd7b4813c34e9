"""`digits predict`."""


def register(subparsers):
    subparsers.add_parser("predict", help="(not available yet)")
