"""The network: torchvision ResNet50 (optionally pretrained) plus two fully connected layers."""
