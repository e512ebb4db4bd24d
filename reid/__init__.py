"""bigcat-reid: re-identify individual tigers and leopards from their flank patterns."""

import os

# PyTorch's CPU kernels run on GNU OpenMP, whose idle threads spin-wait for the next
# parallel region. Where the cores are shared (another job, or this tool's own keypoint
# threads beside the network, as in reid bulk), the spinning threads take the CPU from
# those that have work: the flank head located 0.35 photos/s instead of 5.6 beside one
# other busy process on the 2-core machine (BENCHMARKS.md, "OpenMP threads on a shared
# CPU"). Passive waiting costs microseconds per parallel region when the cores are free.
# Set here, before torch is first imported; an explicit OMP_WAIT_POLICY is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
