"""kolosal demo: a small app with a package, relative imports and stdlib use."""
import sys

from app import report


def main(argv):
    print(report.summary(argv[1:] or ["kolosal", "demo"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
