"""The `nst` command line: local transfers, the one-command stack, and the service's client."""
