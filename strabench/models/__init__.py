"""Backbones (ResNet, MobileNetV2), heads, and the registered variants (``zoo``)."""
