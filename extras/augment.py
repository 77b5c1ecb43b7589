"""Random changes to training images, so the network learns what stays the same in a digit:
turned, resized, moved, slanted, wider or narrower, thicker or thinner strokes, blurred.

Usage: python train.py --augment handwriting   (or: from extras.augment import augmented)
"""
import math

import torch
import torch.nn.functional as F

# Limits of the random changes --augment makes, each drawn uniformly for every image.
AUGMENTATIONS = {
    # Slant, size and position vary a little (the earlier 99% recipe).
    "light": dict(degrees=5.0, scale=0.05, shift=1.0),
    # Also how other people's handwriting, pens and scanners differ from MNIST's: more turn,
    # size and position, slanted, wider or narrower digits, thicker or thinner strokes, blur.
    "handwriting": dict(degrees=8.0, scale=0.1, shift=1.5, shear=10.0, aspect=0.2,
                        thicker=0.7, thinner=0.7, blur=1.0),
}


def augmented(batches, count, generator, name, background):
    """Return the (images, labels) batches of one epoch (count images in all) with every image
    changed at random within AUGMENTATIONS[name]; background is the value of a black pixel in
    the images (-1 after the tutorial's normalisation: data.background()).

    Every random number of the epoch is drawn now, on the CPU, so one seed gives the same changes
    on every device, and they reach the images' device in one copy rather than one per step.
    """
    drawn = draw_changes(count, generator, **AUGMENTATIONS[name])

    def changed_batches():
        start, changes = 0, None
        for images, labels in batches:
            if changes is None:  # the first batch tells the device
                changes = [None if change is None else change.to(images.device)
                           for change in drawn]
            end = start + len(labels)
            yield augment(images, *(None if change is None else change[start:end]
                                    for change in changes), background=background), labels
            start = end
    return changed_batches()


def draw_changes(count, generator, degrees=0.0, scale=0.0, shift=0.0, shear=0.0, aspect=0.0,
                 thicker=0.0, thinner=0.0, blur=0.0):
    """Draw random changes for count images: affine maps (count, 2, 3), stroke weights (count,)
    and blur weights (count,); None for a change that is not asked for.

    degrees: turn; scale: relative size; shift: pixels moved; shear: slant in degrees; aspect:
    relative width; thicker, thinner: how far strokes may grow or shrink, up to a pixel each side
    (1); blur: 0 sharp to 1 as seen at 10 x 10 pixels.
    """
    draws = torch.rand(count, 8, generator=generator) * 2 - 1  # all in [-1, 1), one row an image
    angle = draws[:, 0] * math.radians(degrees)
    zoom = 1 + draws[:, 1] * scale
    offset = draws[:, 2:4] * shift / 14  # affine_grid measures 14 pixels as 1
    slant = torch.tan(draws[:, 4] * math.radians(shear))
    width = 1 + draws[:, 5] * aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    zeros, ones = torch.zeros(count), torch.ones(count)
    rotate = torch.stack([cos, -sin, sin, cos], dim=1).view(count, 2, 2)
    shear_map = torch.stack([ones, slant, zeros, ones], dim=1).view(count, 2, 2)
    # affine_grid maps each output pixel to where it samples the input: dividing by the size
    # makes the digit larger.
    resize = torch.diag_embed(torch.stack([1 / (zoom * width), 1 / zoom], dim=1))
    theta = torch.cat([rotate @ shear_map @ resize, offset[:, :, None]], dim=2)  # (count, 2, 3)
    # From -thinner to thicker; None when neither is asked, so augment() skips the work.
    stroke = (draws[:, 6] + 1) / 2 * (thicker + thinner) - thinner if thicker or thinner else None
    blur_weight = (draws[:, 7] + 1) / 2 * blur if blur else None
    return [theta, stroke, blur_weight]


def augment(images, theta, stroke=None, blur=None, *, background):
    """Return images (N, 1, 28, 28) moved by the affine maps theta (N, 2, 3), with strokes made
    thicker (stroke > 0) or thinner (stroke < 0) and blurred by the weights blur (N,); background
    is the value of a black pixel.

    Each operation runs on the whole batch at once, on the images' device.
    """
    ink = images - background  # black becomes 0, so what the operations fill in is background
    grid = F.affine_grid(theta, images.shape, align_corners=False)  # (N, 28, 28, 2)
    ink = F.grid_sample(ink, grid, align_corners=False)
    if stroke is not None:
        # A 3 x 3 maximum widens every stroke by a pixel on each side; a 3 x 3 minimum narrows
        # it. Each image moves part of the way towards one of them, as far as |stroke|.
        thicker, thinner = maximum_3x3(ink), -maximum_3x3(-ink)
        stroke = stroke.view(-1, 1, 1, 1)
        ink = ink + stroke.abs() * (torch.where(stroke > 0, thicker, thinner) - ink)
    if blur is not None:
        # The picture at 10 x 10 pixels, enlarged back: as blurred as a coarse scan or a small
        # photo. Each image moves part of the way towards it, as far as its blur weight.
        coarse = F.adaptive_avg_pool2d(ink, 10)  # (N, 1, 10, 10)
        blurred = F.interpolate(coarse, size=ink.shape[-2:], mode="bilinear", align_corners=False)
        ink = ink + blur.view(-1, 1, 1, 1) * (blurred - ink)
    return ink + background


def maximum_3x3(images):
    """The maximum of each pixel's 3 x 3 neighbourhood: max_pool2d(images, 3, stride=1, padding=1),
    computed as the maximum of three shifted rows, then of three shifted columns, which is about
    20 times faster on a CPU.
    """
    padded = F.pad(images, (1, 1, 1, 1), value=-math.inf)  # (N, 1, 30, 30)
    rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]),
                         padded[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
