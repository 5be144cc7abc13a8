"""``python -m kolosal ARGS``: runs the ``kolosal`` CLI with ARGS."""

import os
import subprocess
import sys

from ._api import KolosalError, find_bin


def main() -> int:
    try:
        exe = find_bin("kolosal")
    except KolosalError as e:
        sys.stderr.write("kolosal: %s\n" % e)
        return 127
    argv = [exe] + sys.argv[1:]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(exe, argv)  # never returns
    return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main())
