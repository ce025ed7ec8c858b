"""Runs the host agent (gin_deploy.agent) from this path, for stacks deployed before
the agent became a package: their `pulumi destroy` runs the delete command recorded
then, `python <project>/gin_deploy/hostctl.py destroy`, until an `up` records the
new one. Not shipped to hosts; gin_deploy.agent.bundle builds what is."""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gin_deploy.agent.cli import main

    sys.exit(main())
