"""Commits: how batches reach the disk.

- `pipeline.py`: `Ledger.submit`'s pipeline, whose encode and store threads commit one
  batch while the caller runs the next one's kernel;
- `committer.py`: group commit for gateways, gathering many callers' single ops into
  one batch per commit (`Committer`).
"""
