"""Training: losses, schedules, datasets and the accelerate loops (one module each)."""
