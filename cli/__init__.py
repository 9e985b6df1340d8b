"""The `flops` command line: a thin shell over the management API."""
