"""The tutorial's CNN for MNIST: two convolutions, two fully connected layers, 10,592 parameters.

Usage: from model import Net  (``tutorial_model`` is the same class under the tutorial's name)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # Layers are created in the tutorial's order and under its attribute names, so the same seed
        # gives the same initial weights and state_dicts load both ways with strict=True.
        self.convolution1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.convolution2 = nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5)
        self.conv_dropout = nn.Dropout()  # p=0.5; active only in model.train() mode
        self.fc1 = nn.Linear(in_features=16 * 4 * 4, out_features=30)
        self.fc2 = nn.Linear(in_features=30, out_features=10)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        # x: (N, 1, 28, 28); a 5x5 kernel without padding takes 4 pixels off each side length.
        x = self.pool(F.relu(self.convolution1(x)))  # conv (N, 6, 24, 24) -> pool (N, 6, 12, 12)
        x = self.conv_dropout(x)                     # (N, 6, 12, 12)
        x = self.pool(F.relu(self.convolution2(x)))  # conv (N, 16, 8, 8) -> pool (N, 16, 4, 4)
        # The tutorial's x.view(-1, 16 * 4 * 4) would turn a wrong input size into a wrong number
        # of rows without a word; flattening each image keeps N, so fc1 refuses a wrong size.
        x = torch.flatten(x, 1)                      # (N, 256)
        # As in the tutorial there is no activation between fc1 and fc2, so together they act
        # as one linear map of rank at most 30.
        x = self.fc1(x)                              # (N, 30)
        return self.fc2(x)                           # (N, 10) logits, one per digit


# The tutorial's name for the class, so code copied from it keeps working.
tutorial_model = Net
