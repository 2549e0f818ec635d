"""Offline stand-in for the get-pip.py that ``ansible-test sanity --venv`` downloads.

ansible-test runs this file with pip's command-line options and the packages it wants
(``pip==X``). The real get-pip.py carries pip as a zip; here pip comes from the
interpreter's bundled wheel (ensurepip) and the requested packages from the package
index, verified against the system CA bundle.
"""
import os
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DROPPED = {"--no-setuptools", "--no-wheel"}


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    args = [arg for arg in sys.argv[1:] if arg not in DROPPED]
    command = [sys.executable, "-m", "pip", "install"]
    if os.path.exists(CA_BUNDLE):
        command += ["--cert", CA_BUNDLE]
    subprocess.check_call(command + args)


if __name__ == "__main__":
    main()
