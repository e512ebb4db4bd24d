"""Engines: who does the season's work. Both yield result rows as encounters finish.

- :class:`LocalEngine`: this process. On the CPU, the network embeds a chunk of
  encounters with the cores to itself; then the frames of the next chunk are decoded in
  threads while the matcher (keypoints, verification: mostly one core) matches the
  current one. Decoding beside the network would take cores from its thread team, which
  slows it by more than the decoding costs. With the network on an accelerator
  (``--device cuda``) the cores are free while it runs, so the next chunks decode beside
  it as well.
- :class:`RayEngine`: a Ray cluster (or a local Ray instance). Ray Data takes chunks of
  encounters, decodes their frames in parallel tasks, and embeds and matches them in a
  pool of actors that each hold one matcher; rows stream back to the driver, which
  journals them. Workers run the same :class:`~reid.bulk.work.EncounterWorker` code as
  the local engine, on the same chunks, so the results are the same.

Encounters go out in chunks of about ``batch_size`` frames (a burst is never split), cut
from the whole season (:func:`chunks`), so that a resumed run batches its remaining
encounters as an uninterrupted one would.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Iterator, Sequence

from reid.bulk.bursts import Encounter
from reid.bulk.work import EncounterWorker, JobSpec, decode_encounters
from reid.errors import ReidError

ENGINES: tuple[str, ...] = ("local", "ray")


def chunks(encounters: Sequence[Encounter], frames_per_chunk: int) -> list[list[Encounter]]:
    """Consecutive encounters in groups of at most ``frames_per_chunk`` frames (a longer
    burst is a chunk of its own)."""
    out: list[list[Encounter]] = []
    current: list[Encounter] = []
    n = 0
    for e in encounters:
        if current and n + len(e.frames) > frames_per_chunk:
            out.append(current)
            current, n = [], 0
        current.append(e)
        n += len(e.frames)
    if current:
        out.append(current)
    return out


class LocalEngine:
    """Embed a chunk, then match it while the next one decodes (see the module text).

    ``decode_beside_network``: also decode ahead while the network runs (None: when the
    model is not on the CPU). Either way the rows are the same, in the same order."""

    name = "local"

    def __init__(
        self,
        spec: JobSpec,
        matcher,
        prefetch: int = 2,
        decode_beside_network: bool | None = None,
    ) -> None:
        self.spec = spec
        self.worker = EncounterWorker(spec, matcher)
        self.prefetch = max(1, prefetch)
        if decode_beside_network is None:
            decode_beside_network = not str(spec.device).startswith("cpu")
        self.beside = decode_beside_network

    def run(self, parts: Sequence[list[Encounter]]) -> Iterator[dict]:
        """Result rows of the encounters in ``parts`` (chunks, see :func:`chunks`)."""
        work = deque(parts)
        pending: deque = deque()

        def decode_ahead(n: int) -> None:
            while work and len(pending) < n:
                pending.append(self.worker.decode_async(work.popleft()))

        decode_ahead(1)
        while pending:
            decoded = pending.popleft()()
            if self.beside:  # the network is elsewhere: decode during it
                decode_ahead(self.prefetch)
            embeddings = self.worker.embed(decoded)
            if not self.beside:  # the network is done with the cores: decode while matching
                decode_ahead(1)
            yield from self.worker.match(decoded, embeddings)

    @property
    def network_s(self) -> float:
        """Wall time this engine's network has run (batches normalised and embedded)."""
        return self.worker.network_s

    def close(self) -> None:
        self.worker.close()


class _RayMatcher:
    """A Ray actor: one matcher; embeds and matches chunks of decoded encounters."""

    def __init__(self, spec: dict) -> None:
        self.worker = EncounterWorker(JobSpec(**spec))

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = []
        for payload in batch["decoded"]:
            rows.extend(self.worker.process(pickle.loads(payload)))
        return {"row": np.array([pickle.dumps(r) for r in rows], dtype=object)}


def _ray_decode(batch: dict) -> dict:
    """A Ray Data task: decode the frames of chunks of encounters."""
    import numpy as np

    out = []
    for payload in batch["chunk"]:
        encounters, settings, threads = pickle.loads(payload)
        out.append(pickle.dumps(decode_encounters(encounters, settings, threads)))
    return {"decoded": np.array(out, dtype=object)}


class RayEngine:
    """Ray Data: decoding tasks, then a pool of matcher actors (see the module text).

    ``address`` is a running cluster (``auto``, ``ray://host:10001``, ``host:6379``);
    None starts a local instance with ``num_cpus`` CPUs, no dashboard. Paths (images,
    gallery, model) must be readable at the same place on every node.
    """

    name = "ray"

    def __init__(
        self,
        spec: JobSpec,
        settings: tuple,
        *,
        address: str | None = None,
        workers: int | None = None,
        num_cpus: int | None = None,
        gpus_per_worker: float = 0.0,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ReidError(
                "--engine ray needs Ray: pip install 'bigcat-reid[ray]' (or 'ray[data]')"
            ) from None
        self.spec = spec
        self.settings = settings
        self.gpus = gpus_per_worker
        self._started = False
        if not ray.is_initialized():
            kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs.update(num_cpus=num_cpus or 2, configure_logging=False)
            try:
                ray.init(address=address, **kwargs)
            except Exception as e:  # connection refused, bad address, ...
                raise ReidError(f"cannot start or reach Ray at {address or 'local'}: {e}") from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or max(1, cpus // 2))

    def run(self, parts: Sequence[list[Encounter]]) -> Iterator[dict]:
        """Result rows of the encounters in ``parts``, as they stream back."""
        import numpy as np
        import ray

        if not parts:
            return
        items = [
            {"chunk": pickle.dumps((p, self.settings, self.spec.decode_threads))} for p in parts
        ]
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_ray_decode, batch_size=1, num_cpus=1)
        ds = ds.map_batches(
            _RayMatcher,
            fn_constructor_kwargs={"spec": self.spec.to_dict()},
            batch_size=1,
            concurrency=self.workers,
            num_cpus=1,
            num_gpus=self.gpus or None,
        )
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for payload in np.asarray(batch["row"]):
                    yield pickle.loads(payload)
        except ray.exceptions.RayError as e:  # a worker's error, e.g. an unreadable gallery
            cause = getattr(e, "cause", None) or e.__cause__ or e
            if isinstance(cause, ReidError):
                raise ReidError(str(cause)) from None
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
            raise ReidError(f"the Ray job failed: {first}") from None

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
