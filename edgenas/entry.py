"""The `edgenas` console script. `edgenas agent` is dispatched before anything heavy is
imported, so it runs on a board that has only onnxruntime and numpy."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "agent":
        from edgenas.hardware.agent import main as agent_main

        sys.exit(agent_main(sys.argv[2:]))
    from edgenas.cli import main as cli_main

    cli_main()
