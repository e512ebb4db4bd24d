"""Keeping the match calibration in step with a gallery that grows through the API.

The calibration stored with the index (:func:`reid.match.fit_calibration`, which ``reid
enroll`` runs after every enrolment) is fitted on queries made from the gallery's own
flanks with two or more images ("eligible" flanks). Enrolments through the API add
images one at a time; refitting after each would cost a calibration run per upload, so
the service refits when the gallery has changed enough since the last fit:

* the number of eligible flanks grew by at least ``recalibrate_growth`` (10 %) of the
  number at the last fit (and by at least one flank), or
* it grew at all while the gallery is small (fewer than ``recalibrate_small`` eligible
  flanks at the last fit), where one flank more changes the fit most, or
* the index has no calibration yet and two flanks are eligible (the least a fit needs).

Eligible flanks are counted by photos (cheap, on every enrolment); a flank whose photos
are all frames of one burst (near-duplicates, left out with each calibration query) gives
the fit no "known" query. A fit that has too few of them, or no genuine pair, is refused
(:class:`reid.match.CannotCalibrate`): the service keeps the calibration it has (the one
``reid enroll`` stored, fitted on the gallery or shipped with the release), logs why, and
tries again only once more flanks are eligible.

The eligible count of a fit is kept in its ``stats`` (``eligible_flanks``); for an index
whose calibration came from ``reid enroll`` the count at start-up is taken as the
baseline (``reid enroll`` refits whenever it saves).

The refit runs in one background thread, so the enrolment that triggers it answers at
once and matches go on meanwhile with the old calibration (a fit only reads the index).
Requests arriving during a fit are coalesced: when it ends, the rule is checked again.
The new calibration is swapped in with one reference assignment (a match reads
``matcher.calibration`` once, at its start, so it uses the old or the new model, never a
mix) and saved with the index under the gallery lock, like an enrolment.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time

from reid.match import CALIBRATION_KEY, CannotCalibrate, fit_calibration, near_duplicate_related

__all__ = ["Recalibrator", "eligible_flanks", "refit_due"]

log = logging.getLogger("serve.calibration")


def eligible_flanks(index) -> int:
    """Flanks (species, individual, side) with two or more gallery images: the flanks
    a calibration fit can make queries of."""
    counts: dict[tuple[str, str, str], int] = {}
    for e in index.entries().values():
        counts[e.flank] = counts.get(e.flank, 0) + 1
    return sum(1 for n in counts.values() if n >= 2)


def refit_due(fitted: int | None, now: int, growth: float, small: int) -> bool:
    """Whether a calibration fitted with ``fitted`` eligible flanks (None: no calibration)
    is stale now that ``now`` flanks are eligible (see the module docstring)."""
    if now < 2:
        return False
    if fitted is None:
        return True
    if now <= fitted:
        return False
    if fitted < small:
        return True
    return now - fitted >= max(1, math.ceil(growth * fitted))


class Recalibrator:
    """Refits the calibration of ``state.matcher`` in a background thread when due."""

    def __init__(self, state) -> None:
        s = state.settings
        self.state = state
        self.growth = s.recalibrate_growth
        self.small = s.recalibrate_small
        self.sample = s.calibration_sample
        self.enabled = s.recalibrate
        matcher = state.matcher
        cal = matcher.calibration
        # the baseline: what the stored fit says, else the gallery as loaded
        fitted = None if cal is None else cal.stats.get("eligible_flanks")
        if cal is not None and fitted is None:
            fitted = eligible_flanks(matcher.index)
        self.fitted: int | None = None if fitted is None else int(fitted)
        self.refits = 0
        self.last_error: str | None = None
        # eligible flanks when a fit was last refused (CannotCalibrate): not retried
        # until more flanks are eligible
        self.refused: int | None = None
        self._cond = threading.Condition()
        self._wanted = False
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def due(self) -> bool:
        if not self.enabled or self.state.matcher is None:
            return False
        now = eligible_flanks(self.state.matcher.index)
        if self.refused is not None and now <= self.refused:
            return False
        return refit_due(self.fitted, now, self.growth, self.small)

    def notify(self) -> bool:
        """After the gallery changed: start a background refit if one is due (or note
        that one is wanted after the running one). True when a refit is under way."""
        if not self.due():
            return self.pending
        with self._cond:
            if self._closed:
                return False
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="reid-recalibrate", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

    @property
    def pending(self) -> bool:
        """A refit is running or wanted."""
        with self._cond:
            return self._busy or self._wanted

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no refit is running or wanted; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._wanted or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._wanted = False
                    self._cond.notify_all()
                    return
                self._wanted = False
                self._busy = True
            try:
                if self.due():
                    self._refit()
            except Exception as e:  # a failed fit keeps the old calibration; retried later
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("refitting the match calibration failed")
                self.state.metrics.calibration_refits.labels("failed").inc()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _refit(self) -> None:
        state = self.state
        matcher = state.matcher
        old = matcher.calibration
        eligible = eligible_flanks(matcher.index)  # counted before the fit reads the gallery
        started = time.perf_counter()
        try:
            new = fit_calibration(
                matcher,
                self.sample,
                new_prior=0.5 if old is None else old.new_prior,
                workers=1,  # leave the cores to the matches being served
                show_progress=False,
                related=near_duplicate_related(matcher.index),  # as reid enroll fits it
            )
        except CannotCalibrate as e:  # e.g. every flank's photos one burst: keep the old
            self.refused = eligible
            self.last_error = str(e)
            state.metrics.calibration_refits.labels("refused").inc()
            log.warning("match calibration not refitted on %d eligible flanks, keeping %s: %s",
                        eligible, "none" if old is None else "the current one", e)  # fmt: skip
            return
        new = dataclasses.replace(new, stats={**new.stats, "eligible_flanks": eligible})
        with self._cond:
            if self._closed:
                return
        with state.gallery_lock:
            matcher.calibration = new  # one reference: a match sees the old or the new
            matcher.index.attachments[CALIBRATION_KEY] = new.to_dict()
            matcher.index.save(state.index_dir)
        self.fitted = eligible
        self.refits += 1
        self.last_error = None
        state.metrics.calibration_refits.labels("done").inc()
        log.info("match calibration refitted on %d eligible flanks in %.1f s", eligible,
                 time.perf_counter() - started)  # fmt: skip
