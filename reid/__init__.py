"""bigcat-reid: re-identify individual tigers and leopards from their flank patterns."""

import os

# PyTorch's CPU kernels run on GNU OpenMP, whose idle threads spin-wait for the next
# parallel region. Where the cores are shared (another job, or this tool's own keypoint
# threads beside the network, as in reid bulk), the spinning threads take the CPU from
# those that have work: beside one other busy process on the 2-core machine the flank
# head took 0.48 s a photo instead of 0.048, the batched forward pass ran at 26 images/s
# instead of 41 (BENCHMARKS.md, "OpenMP threads on a shared CPU"). Passive waiting
# costs a little when the cores are free (flank head 0.046 s a photo against 0.034).
# Set here, before torch is first imported (OpenMP reads it once, when it loads: a
# program that imports torch before reid keeps its own policy); an explicit
# OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept (GOMP_SPINCOUNT=300000 is GNU's default).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"
