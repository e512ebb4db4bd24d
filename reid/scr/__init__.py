"""Spatial capture-recapture (SCR): population density from identified individuals.

``data`` holds the survey (detectors, capture history, mask), ``mask`` builds habitat
masks, ``fit`` the maximum-likelihood estimates, ``simulate`` surveys with known density.
"""
