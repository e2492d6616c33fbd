"""Storage: every LMDB database and key of a ledger, and the threads that write them.

- `keys.py`: the on-disk schema (databases, keys, the format version);
- `env.py`: the environment and the `Store` that opens it;
- `journal.py`: the hash-chained journal batches, reading records back;
- `ids.py`: the id index (flushes, the id log and its merge, lookups);
- `checkpoints.py`: checkpoint files and the thread that writes them;
- `fares.py`: the installed fare versions;
- `datafile.py`: keeping the data file ahead of its pages, disk usage.

Nothing here knows op semantics; the engines decide and the ledger orchestrates.
"""
