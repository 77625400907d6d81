"""The pure core's helpers, below every other layer: errors, number formatting and atomic writes,
bounded YAML reads, and the runtime (device, threads, versions)."""
