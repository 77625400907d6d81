"""The design space's pure core: the spec (no torch), presets, the analytic cost and its table, the
model builder, and the budget keys."""
