"""A command run in a process of its own that says, as it ends, which modules it loaded: what a
command, or a server once it has served, holds that it does not use (tests/test_cli_start.py,
tests/console/test_console_modules.py)."""

# the command, then the modules it loaded, one JSON list on stderr's last line
MODULES_PRINTED_AT_EXIT = """
import json, sys
from appliance.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""
