"""Networks as students edit model.py, for the tests of the page, the exported file and page/nodes.py:
batch norm, another ReLU, wider layers, grouped and dilated convolutions.

Usage: from tests.networks import EDITED, DilatedNet, ...   (tests only)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import Net


class BatchNormNet(Net):
    """Net as a student edits it: batch normalisation after convolution1, and a third convolution
    (4 x 4 with padding 'same', so 16 x 4 x 4 stays 16 x 4 x 4) without pooling."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(6)
        self.convolution3 = nn.Conv2d(16, 16, kernel_size=4, padding="same")

    def forward(self, x):
        x = self.pool(F.relu(self.norm1(self.convolution1(x))))
        x = self.conv_dropout(x)
        x = self.pool(F.relu(self.convolution2(x)))
        x = self.convolution3(x)
        return self.fc2(self.fc1(torch.flatten(x, 1)))


class ReluAfterFc1Net(Net):
    """Net with the ReLU between fc1 and fc2 that the tutorial leaves out."""

    def forward(self, x):
        x = self.pool(F.relu(self.convolution1(x)))
        x = self.pool(F.relu(self.convolution2(self.conv_dropout(x))))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class WideNet(nn.Module):
    """A wider network with other names: 12 and 24 kernels, 64 hidden units, nn.ReLU modules."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 12, kernel_size=5)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv2d(12, 24, kernel_size=5)
        self.act_b = nn.ReLU()
        self.hidden = nn.Linear(24 * 4 * 4, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act_a(self.conv_a(x)), 2)
        x = F.max_pool2d(self.act_b(self.conv_b(x)), 2)
        return self.out(self.hidden(x.view(x.size(0), -1)))


class DilatedNet(nn.Module):
    """A grouped, dilated convolution, in-place ReLUs (a module and relu_()), and the functional
    F.max_pool2d and F.dropout, as students write them."""

    def __init__(self):
        super().__init__()
        self.convolution1 = nn.Conv2d(1, 6, kernel_size=5)
        self.norm = nn.BatchNorm2d(6)
        self.act = nn.ReLU(inplace=True)  # changes norm's output tensor itself
        self.convolution2 = nn.Conv2d(6, 12, kernel_size=3, dilation=2, groups=2)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act(self.norm(self.convolution1(x))), 2)  # (6, 12, 12)
        x = F.dropout(x, p=0.25, training=self.training)
        x = F.max_pool2d(self.convolution2(x).relu_(), 2)                # (12, 8, 8) -> (12, 4, 4)
        return self.fc(torch.flatten(x, 1))


# Stage names and shapes each edited network must show, in order.
EDITED = {
    "batchnorm": (BatchNormNet, [("convolution1", [6, 24, 24]), ("norm1", [6, 24, 24]),
                                 ("relu", [6, 24, 24]), ("pool", [6, 12, 12]),
                                 ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                 ("pool_1", [16, 4, 4]), ("convolution3", [16, 4, 4]),
                                 ("flatten", [256]), ("fc1", [30]), ("fc2", [10]), ("softmax", [10])]),
    "relu after fc1": (ReluAfterFc1Net, [("convolution1", [6, 24, 24]), ("pool", [6, 12, 12]),
                                         ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                         ("pool_1", [16, 4, 4]), ("flatten", [256]), ("fc1", [30]),
                                         ("fc2", [10]), ("softmax", [10])]),
    "wide": (WideNet, [("conv_a", [12, 24, 24]), ("max_pool2d", [12, 12, 12]),
                       ("conv_b", [24, 8, 8]), ("max_pool2d_1", [24, 4, 4]), ("view", [384]),
                       ("hidden", [64]), ("out", [10]), ("softmax", [10])]),
    "dilated": (DilatedNet, [("convolution1", [6, 24, 24]), ("norm", [6, 24, 24]),
                             ("act", [6, 24, 24]), ("max_pool2d", [6, 12, 12]),
                             ("dropout", [6, 12, 12]), ("convolution2", [12, 8, 8]),
                             ("max_pool2d_1", [12, 4, 4]), ("flatten", [192]), ("fc", [10]),
                             ("softmax", [10])]),
}

