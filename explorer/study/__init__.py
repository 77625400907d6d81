"""A study: its file (config, checks, knobs), the space and sampler, the objective, the run loop,
`--jobs`, early stopping and the space's landscape."""
