"""The Flower app FLOps runs: a ServerApp and a ClientApp around the user's code."""
