"""Stand-in for ansible-test's pip bootstrap script (get-pip-X.Y.py).

ansible-test creates a virtualenv per sanity test and bootstraps pip in it by
downloading get-pip from a host this machine cannot reach.  This script is
installed at the cache path ansible-test checks first
(~/.ansible/test/cache/get_pip_X_Y.py) and does the same job with what the
machine has: the interpreter's bundled pip (ensurepip), then the requested
pip version from the package index pip is configured for.

It takes get-pip's command line: [pip options] pip==X.Y [--no-setuptools] [--no-wheel].
"""

import ensurepip
import os
import subprocess
import sys


def main():
    # ensurepip points PIP_CONFIG_FILE at /dev/null in os.environ; the real
    # install must see the machine's pip configuration (index, CA bundle).
    env = dict(os.environ)
    ensurepip.bootstrap(upgrade=True)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main())
