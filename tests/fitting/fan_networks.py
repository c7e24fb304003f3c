"""Small face-alignment ``FAN`` networks for tests, saved where the FAN backend looks for 2DFAN4.

Nothing is downloaded: the networks are face-alignment's own ``FAN`` class with one hourglass
instead of four, in the same state-dict format as the real 2DFAN4 file, so the backend's real
loading path reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from face_alignment.models import FAN

from fitting.landmarks.fan_backend import WEIGHTS_FILE
from fitting.models.model import NUM_LANDMARKS


def colour_of_landmark(index: int) -> int:
    """The RGB channel that landmark ``index`` follows in :func:`dot_tracking_fan`."""
    return index % 3


def _group_mixing(out_channels: int, in_channels: int) -> torch.Tensor:
    """A 1x1 convolution weight averaging the input channels of the output's colour group."""
    weight = torch.zeros(out_channels, in_channels, 1, 1)
    for out_channel in range(out_channels):
        group = [c for c in range(in_channels) if c % 3 == out_channel % 3]
        weight[out_channel, group] = 1.0 / len(group)
    return weight


def dot_tracking_fan() -> FAN:
    """A one-hourglass FAN whose landmark ``k`` heatmap peaks on the brightest spot of colour
    channel ``k % 3`` of the crop.

    Every 3x3 convolution is zeroed, so each residual block is the identity; the stem samples
    each colour channel (the 7x7 kernel's centre tap) and the 1x1 layers average within a
    colour group. The hourglass then adds blurred copies of the map to itself, which keeps
    the maximum where the bright spot is.
    """
    network = FAN(1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
        for out_channel in range(64):
            network.conv1.weight[out_channel, out_channel % 3, 3, 3] = 1.0
        network.conv2.downsample[2].weight.copy_(_group_mixing(128, 64))
        network.conv4.downsample[2].weight.copy_(_group_mixing(256, 128))
        network.conv_last0.weight.copy_(_group_mixing(256, 256))
        network.l0.weight.copy_(_group_mixing(NUM_LANDMARKS, 256))
    return network.eval()


def random_fan(seed: int) -> FAN:
    """A one-hourglass FAN with torch's default random initialisation under ``seed``."""
    torch.manual_seed(seed)
    return FAN(1).eval()


def install_weights(network: FAN, torch_home: Path) -> Path:
    """Save ``network``'s state dict as ``$TORCH_HOME/hub/checkpoints/2DFAN4-...pth.tar``."""
    checkpoints = Path(torch_home) / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / WEIGHTS_FILE
    torch.save(network.state_dict(), path)
    return path


def dots_image(width: int, height: int, dots: dict, *, radius: int = 4) -> np.ndarray:
    """A black RGB image with a filled square of side ``2 radius + 1`` per colour channel.

    Parameters
    ----------
    dots : {channel: (x, y)}   integer pixel centre of each channel's dot
    """
    image = np.zeros((height, width, 3), np.uint8)
    for channel, (x, y) in dots.items():
        image[y - radius:y + radius + 1, x - radius:x + radius + 1, channel] = 255
    return image
