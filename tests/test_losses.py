"""The paper's losses: eq. 6 (renderer) and the discriminator's hinge loss (eq. 4 is tested in test_a2e.py)."""

from __future__ import annotations

import torch

from memface_hub.training.losses import discriminator_hinge_loss, renderer_loss

BOX = (4, 12, 2, 14)


class ConstantCritic(torch.nn.Module):
    """A 'discriminator' scoring every patch with the mean brightness: enough to check the GAN term's sign."""

    def forward(self, images):
        return images.mean(dim=(1, 2, 3), keepdim=True)


def test_renderer_loss_terms_and_weights():
    target = torch.full((2, 3, 16, 16), 0.5)
    output = target.clone()
    output[:, :, BOX[0]:BOX[1], BOX[2]:BOX[3]] += 0.2                # wrong only inside the mouth box
    exact = renderer_loss(target, target, BOX)
    assert exact.total == 0 and exact.l1 == 0
    losses = renderer_loss(output, target, BOX, ConstantCritic(), perceptual=lambda a, b: (a - b).abs().mean(),
                           regulariser=torch.tensor(3.0), l1_weight=2.0, perceptual_weight=0.5, gan_weight=0.1,
                           regulariser_weight=0.01)
    box_fraction = (8 * 12) / (16 * 16)
    torch.testing.assert_close(losses.l1, torch.tensor(0.2 * box_fraction))
    torch.testing.assert_close(losses.perceptual, torch.tensor(0.2))      # measured on the mouth box only
    torch.testing.assert_close(losses.gan, torch.tensor(-0.7))            # the generator wants D(fake) high
    torch.testing.assert_close(losses.total, 2.0 * losses.l1 + 0.5 * 0.2 + 0.1 * -0.7 + 0.01 * 3.0)
    assert renderer_loss(output, target, BOX, ConstantCritic(), gan_weight=0.0).gan == 0   # a dropped term


def test_discriminator_hinge_loss():
    confident = discriminator_hinge_loss(torch.full((4, 1), 2.0), torch.full((4, 1), -2.0))
    assert confident == 0                                   # beyond the margins: nothing to learn
    fooled = discriminator_hinge_loss(torch.full((4, 1), -1.0), torch.full((4, 1), 1.0))
    assert fooled == 4.0                                    # 2 on each side
    real = torch.zeros(3, 1, requires_grad=True)
    discriminator_hinge_loss(real, torch.zeros(3, 1)).backward()
    assert (real.grad < 0).all()                            # pushes D(real) up
