"""Compatibility with the Oakestra FLOps `flops-utils` package.

ML repos written for Oakestra FLOps import `flops_utils.ml_repo_templates` and
`flops_utils.ml_repo_building_blocks.load_dataset`; FLOps ships this package in
its runtime so those repos run unchanged.
"""
