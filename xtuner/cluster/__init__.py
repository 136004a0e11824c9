"""Scale-out helpers: submit a sweep to a Ray cluster, estimate its GPU-hours, check storage and resources.

- ``submit``: `submit(spec, address, ...)` runs `xtuner sweep run` on a cluster through Ray's job submission API.
- ``estimate``: GPU-hours and a node plan from plain numbers (for `xtuner sweep run --dry-run`).
- ``resources``: refuse a sweep whose per-trial GPU request the running cluster can never satisfy.
- ``storage``: prove a storage URI (local, ``s3://``, ``gs://``) can be written, with a hard deadline.
- ``redact``: keep secrets out of logs and params; keep output paths inside the storage root.

Ray and pyarrow are imported inside the functions that need them, so importing this package is cheap.
"""
