"""The Space app, launched on 127.0.0.1 and driven through the real gradio_client."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_preprocess_endpoint_through_gradio_client(carphone_path):
    from gradio_client import Client, handle_file

    import space_app

    demo = space_app.build_demo().queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        crops, summary = client.predict(handle_file(str(carphone_path)), api_name="/preprocess")
        assert summary["frames"] == 100 and summary["frames_tracked"] >= 95
        assert str(crops.get("video") if isinstance(crops, dict) else crops).endswith(".mp4")
    finally:
        demo.close()
