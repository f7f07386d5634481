"""Stage 2, networks: the registry of backbones (as data), a truncated network built
from it, weights and presets, preprocessing, precision, engines, the ImageNet heads."""
