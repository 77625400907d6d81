"""Training one network: the data (sources, decoding, cache, splits) and the trainer; no Optuna."""
