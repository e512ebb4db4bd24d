"""Season bulk matching (``reid bulk``): a whole season of camera-trap captures matched
to the catalogue, new individuals proposed, cross-border movements reported; crash-safe
and resumable, on this machine or a Ray cluster.

- :mod:`reid.bulk.sources`: folder trees (manifest or EXIF) and Camtrap DP packages
- :mod:`reid.bulk.bursts`: frames of one pass at one camera -> one encounter
- :mod:`reid.bulk.journal`: append-only, fsync'd results; resume after a kill
- :mod:`reid.bulk.work`: decode, embed and match encounters (shared by the engines)
- :mod:`reid.bulk.engines`: local (threads) and Ray Data engines
- :mod:`reid.bulk.cluster`: unmatched encounters -> proposed new individuals
- :mod:`reid.bulk.report`, :mod:`reid.bulk.camtrap_out`: HTML report + map, the Camtrap DP
  package (the input filled in, or derived from a folder season)
- :mod:`reid.bulk.run`: the whole job
"""

from reid.bulk.run import BulkOptions, BulkSummary, run_bulk

__all__ = ["BulkOptions", "BulkSummary", "run_bulk"]
