"""Metrics and ablation protocols (definitions: docs/EVALUATION.md)."""
