"""Metrics and ablation protocols (definitions: EVALUATION.md of the design notes)."""
