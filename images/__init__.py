"""Containerfile templates (importable as `flops_images` for package data)."""
