"""Networks and their files: ``encoders`` (MLP, ConvNet, CIFAR ResNet-18 with normalisation
inside), ``external`` (torchvision-layout ResNets and projector specs for imported
checkpoints), ``checkpoint`` (safetensors weights and training state, checked on load).

May import: ``config``, ``errors``, ``data``, ``store``; ``theory``.
"""
