"""The management REST API (a thin shell over flops_management)."""
