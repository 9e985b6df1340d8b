"""Templates `flops init` writes (importable as `flops_templates` for package data)."""
