"""What training and inference share, below both verb packages: the device, the network of a
recipe and its weights, and the sliding-window engine (:mod:`.windows`)."""
