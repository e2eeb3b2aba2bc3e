"""`python -m openvpc`: the same command line as `openvpc`."""

from openvpc.cli import main

main()
