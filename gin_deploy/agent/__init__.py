"""The host agent: everything that must happen on a host, standard library only.

It ships to hosts as one file and runs there with the payload on stdin; nothing in this
package may import Pulumi, Jinja2 or any other gin-deploy layer.
"""
