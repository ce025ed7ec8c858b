"""`python -m gin_deploy.agent COMMAND ...`: the agent from its source files."""

import sys

from gin_deploy.agent.cli import main

sys.exit(main())
