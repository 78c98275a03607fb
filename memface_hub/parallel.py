"""Helpers for process pools on small machines."""

from __future__ import annotations

import os


def limit_worker_threads() -> None:
    """One compute thread per pool worker: N workers × M library threads would oversubscribe the cores."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    import cv2

    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
