"""Synapse detection (WASP-SYN): point tables, cube targets, detection and the challenge's scoring.

* :mod:`.points`: the point table (pre points, post points linked to a pre) and its files.
* :mod:`.cubes`: points to 2-channel (pre, post) cube targets.
* :mod:`.detection`: probability maps to points (threshold, 26-connected components, centroids,
  nearest-pre links), whole-volume and blockwise.
* :mod:`.scoring`: the WASP-SYN F1_pre / F1_post rules.

Pure numpy / scipy / cc3d; no torch, no CLI.
"""
