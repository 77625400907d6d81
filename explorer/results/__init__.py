"""What a study's trials give: fronts and rank statistics, selection, export files, retraining,
calibration, fidelity and ONNX."""
