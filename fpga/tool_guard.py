"""Run a build's tools, and stop them when the process that started them is gone.

``python fpga/tool_guard.py PARENT_PID COMMAND [ARG ...]`` (run as a script: it imports
nothing from the package). :func:`fpga.build._run_flow` starts it as the leader of a
process group of its own, so that Ctrl-C at a terminal reaches the builder alone, which
then stops the whole group. A builder killed outright (SIGKILL, or a Dask worker killed
with its nanny) stops nothing: this guard notices that its parent is no longer
``PARENT_PID`` and stops its group itself (SIGTERM, then SIGKILL 5 s later), nextpnr
included. Exit status: the command's, or 128 + N when signal N ended it.
"""

import os
import signal
import subprocess
import sys

#: Seconds between two looks at the parent.
POLL_S = 0.5
#: Seconds the tools have to end after SIGTERM.
GRACE_S = 5.0


def _stop_group(child: subprocess.Popen) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    try:
        child.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(0, signal.SIGKILL)


def main(argv: list) -> int:
    parent, command = int(argv[0]), argv[1:]
    child = subprocess.Popen(command)
    while True:
        try:
            code = child.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                _stop_group(child)
                return 128 + signal.SIGTERM
            continue
        return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
