"""From stored results to what a reader sees: statistics, tables, the report, published numbers, figures, calibration."""
