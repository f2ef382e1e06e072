"""Data quality: the applicability diagnosis and the ef-for-recall calibration. Uses the engine;
the engine never imports it."""
