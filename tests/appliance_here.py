"""`python -m appliance ARGS` in the test's own process: ``main`` as the child runs it, from
the folder and in the environment the child would have had, its exit code and its standard
output and error (log lines at INFO included, as the child's ``logging.basicConfig`` wrote
them) read as a child's would be. A child costs ~0.4 CPU-s a command more, nearly all of it
the imports of a fresh interpreter; tests about the command's own process (a kill, a signal,
a file-size limit, a read that could hang, the process's environment as such) start one."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from unittest import mock

from appliance.cli import main


def appliance_here(args: list[str], cwd: Path,
                   env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``main(args)`` run from ``cwd`` with ``env`` over the environment; a CompletedProcess
    as ``subprocess.run(..., capture_output=True, text=True)`` gives for the child."""
    stdout, stderr = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.addHandler(logging.StreamHandler(stderr))
    root.setLevel(logging.INFO)
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr):
            try:
                code = main(args)
            except SystemExit as stop:  # argparse's refusal, a signal's exit
                code = stop.code if isinstance(stop.code, int) else 1
    finally:
        os.chdir(here)
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["appliance", *args], code, stdout.getvalue(),
                                       stderr.getvalue())
