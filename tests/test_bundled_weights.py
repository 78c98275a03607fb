"""Pin the bundled weights' outputs on a fixed input (an expected slice, as diffusers' model tests do), so a
change to the models, their loading or the weights cannot pass unnoticed. Rebuilding the bundled weights
(scripts/build_demo_assets.py) means updating these numbers on purpose."""

from __future__ import annotations

import torch

from memface_hub.pipeline import MemFacePipeline, load_speaker

EXPECTED_A2E = [0.17565683, 0.16248335, 0.03132214, 0.06345393, 0.0254513, 0.02240891]
EXPECTED_RENDERER = [0.66333437, 0.73595345, 0.83261186, 0.77500218, 0.64865369, 0.6202473, 0.67411542, 0.67144644,
                     0.55131924, 0.61650842, 0.57355678, 0.70569509]


def test_bundled_weights_give_the_pinned_outputs():
    pipe, speaker = MemFacePipeline.from_pretrained(), load_speaker("demo")
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(32, pipe.a2e.feature_dim, generator=generator)
    size = pipe.renderer.crop_size
    template = torch.rand(1, 3, size, size, generator=generator)
    sketch = torch.rand(1, 3, size, size, generator=generator)
    with torch.no_grad():
        expressions = pipe.a2e.predict(features)
        output = pipe.renderer(template, sketch, torch.from_numpy(speaker.keys[5:6]).float(),
                               **pipe.renderer.speaker_memory_inputs(speaker.keys, speaker.values))
    top, _, left, _ = pipe.renderer.patch_box
    torch.testing.assert_close(expressions[10, :6], torch.tensor(EXPECTED_A2E), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(output.image[0, :, top + 20, left + 20:left + 24].flatten(),
                               torch.tensor(EXPECTED_RENDERER), rtol=1e-3, atol=1e-4)
