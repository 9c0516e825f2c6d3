"""masktwins: MaskTwins unsupervised domain adaptation for volumetric EM segmentation."""

import os as _os

# OpenMP threads that spin-wait for a peer collapse when another process shares the cores (a
# shared cluster node, a laptop): measured on 2 cores next to one busy process, 30 training
# iterations took 319 s with the default policy and 22 s with PASSIVE. It must be set before
# torch loads its OpenMP runtime, so here, before any masktwins module imports torch; a value
# the user set (even empty) is kept. bench/busy_neighbour.py measures both policies.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
