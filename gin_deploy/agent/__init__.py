"""The host agent: everything that must happen on a host, standard library only.

It ships to hosts as one file (bundle.py zips this package) and runs there with the
payload on stdin (cli.py is the entry point; payload.py defines what the program sends,
wire.py serialises and parses it). Nothing in this package may import Pulumi, Jinja2 or
any other gin-deploy layer; the program imports from here, never the other way round.
"""
