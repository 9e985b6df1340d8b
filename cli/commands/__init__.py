"""`flops` subcommands, one module per noun."""
