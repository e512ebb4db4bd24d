"""Spatial capture-recapture (SCR): population density from identified individuals.

``data`` holds the survey (detectors, capture history, mask), ``mask`` builds habitat
masks, ``fit`` the maximum-likelihood estimates, ``transboundary`` the joint and per-country
estimates, ``simulate`` surveys with known density. The method: docs/population.md.
"""
