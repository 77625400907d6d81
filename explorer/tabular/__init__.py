"""A tabular benchmark of a study's space (as NAS-Bench-101/201): every distinct network trained
once with a declared recipe, a longer recipe and a second seed on a sample, zero-cost scores, and
replays of the samplers on the table (the real `explorer run` code, milliseconds per trial)."""
