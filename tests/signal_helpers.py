"""Stop signals sent while a command is still starting: ``appliance COMMAND`` run in a child that
sends itself a signal as it first imports a given module (the middle of its start)."""

from __future__ import annotations

import subprocess
import sys

SIGNAL_DURING_IMPORT = """
import builtins, os, signal, sys
module, signame = sys.argv[1], sys.argv[2]
real_import = builtins.__import__
def importing(name, *args, **kwargs):
    global module
    if name == module:  # its first import: the command is still starting
        module = None
        os.kill(os.getpid(), getattr(signal, signame))
    return real_import(name, *args, **kwargs)
builtins.__import__ = importing
from appliance.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


def started_and_signalled(module: str, signame: str, *command: str) -> tuple[int, str]:
    """Run ``appliance COMMAND`` in a child that sends itself ``signame`` as it first imports
    ``module``; its exit code and what it wrote on stderr."""
    child = subprocess.run([sys.executable, "-c", SIGNAL_DURING_IMPORT, module, signame,
                            *command], capture_output=True, text=True, timeout=120, check=False)
    return child.returncode, child.stderr
