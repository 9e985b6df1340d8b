"""FLOps runtime: what runs inside learner and aggregator environments."""

__version__ = "0.1.0"
