"""The reliability soak: many simulated cycles through the real pipeline with injected
faults, then a check that nothing was lost and nothing duplicated (`python -m soak`).

- `plan`: how many cycles, which cycle gets which fault (seeded, so a run can be repeated);
- `source`: what happens in totesys between two cycles (simulated business, late commits);
- `stages`: each stage as its own process, optionally paused at the pipeline's steps;
- `proxy`: the S3 endpoint the pipeline sees, which a fault can cut;
- `faults`: how each kind of fault is injected;
- `verify`: the warehouse against the SQL expectation, ledger, manifests and objects;
- `run`: the loop and its one-line summary.
"""
