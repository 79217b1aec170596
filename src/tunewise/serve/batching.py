"""Dynamic batching: concurrent requests wait a few milliseconds to share one forward pass.

One worker runs the model (torch already uses every core for one batch; two batches at once would
only fight over them). The first request of a batch waits ``wait_ms`` for others; requests that
arrive while a batch runs are queued and form the next batch at once, so batches grow with load.
A batch is split into groups of one rung (and one ``max_tokens``): PEFT can run one active adapter
per forward pass, so requests for different adapters on the shared base run as consecutive
sub-batches of the same batch, not in one mixed forward.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tunewise.core import Prediction, Record

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    pass


class WorkerDied(RuntimeError):
    """The batch worker failed outside a model call; its batch is answered 503 and it is restarted."""


@dataclass
class Job:
    served: object  # registry.Served
    record: Record
    max_tokens: int | None
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    batch_size: int = 0
    stream: asyncio.Queue | None = None  # text deltas as they are decoded (continuous generation only)
    result: Prediction | None = None  # set by the decode engine on the model's thread
    fmt: object | None = None  # validate.ResponseFormat: the decode engine keeps the answer JSON as it decodes


def run_group(served, records: list[Record], max_tokens: int | None) -> list[Prediction]:
    """Predict one group with its rung, its adapter active and the request's token budget."""
    rung = served.rung
    config = rung.config
    if max_tokens is not None and max_tokens != config.eval.max_new_tokens:
        rung.config = config.model_copy(update={"eval": config.eval.model_copy(update={"max_new_tokens": max_tokens})})
    # A classifier's shared prefix runs once for every batch (Served.prefix), not once per batch.
    fixed = {"prefix": served.prefix()} if served.task == "classification" and served.prefix()[0] else {}
    try:
        with served.context():
            preds = rung.predict(records, **fixed)
    finally:
        rung.config = config
    # Counted here, on the model's thread: a fast tokenizer used from two threads at once can fail.
    tok = getattr(rung, "tokenizer", None)
    for p in preds:
        p.completion_tokens = len(tok(p.output, add_special_tokens=False)["input_ids"]) if tok is not None else 0
    return preds


class Batcher:
    def __init__(self, wait_ms: float, max_batch: int, max_queue: int, metrics=None):
        self.wait = wait_ms / 1000
        self.max_batch, self.max_queue = max_batch, max_queue
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tunewise-model")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.current: list[Job] = []  # the batch in hand, failed with 503 if the worker dies
        self.restarts = 0
        self.engines: dict[str, object] = {}  # served id -> DecodeEngine (continuous generation)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self._spawn()

    def _push(self, job: Job, delta: str) -> None:
        """From the model's thread: hand a streamed text delta to its request on the event loop."""
        if job.stream is not None:
            self.loop.call_soon_threadsafe(job.stream.put_nowait, delta)

    def _running(self) -> list[Job]:
        return [s.job for e in self.engines.values() for s in e.seqs]

    def _spawn(self) -> None:
        self.task = asyncio.create_task(self._loop())
        self.task.add_done_callback(self._died)

    def _died(self, task: asyncio.Task) -> None:
        if task.cancelled():  # stopped on purpose
            return
        jobs = self.current + [j for e in self.engines.values() for j in e.fail_all()]
        log.error("the batch worker died; answering its %d request(s) 503 and restarting it", len(jobs),
                  exc_info=task.exception())
        for j in jobs:
            if not j.future.done():
                j.future.set_exception(WorkerDied("the model worker failed and was restarted; retry the request"))
        self.current = []
        self.restarts += 1
        if self.metrics:
            self.metrics.restarts.inc()
        self._spawn()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def depth(self) -> int:
        return self.queue.qsize() if self.queue else 0

    def enqueue(self, served, record: Record, max_tokens: int | None, stream: bool = False, fmt=None) -> Job:
        """Queue a request; its ``future`` resolves with the prediction (``stream``: deltas on ``job.stream``)."""
        if self.depth() >= self.max_queue:
            raise QueueFull(f"the request queue is full ({self.max_queue} waiting); retry later")
        job = Job(served, record, max_tokens, asyncio.get_running_loop().create_future(),
                  stream=asyncio.Queue() if stream else None, fmt=fmt)
        self.queue.put_nowait(job)
        return job

    async def submit(self, served, record: Record, max_tokens: int | None) -> Job:
        job = self.enqueue(served, record, max_tokens)
        await job.future
        return job

    async def _collect(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        from tunewise.serve.engine import continuous

        while True:
            self.current = []
            running = any(e.active for e in self.engines.values())
            # While sequences decode, new requests join between two steps; idle, wait for the first.
            batch = self.current = self._drain() if running else await self._collect()
            if batch and self.metrics:
                self.metrics.observe_batch(len(batch) + len(self._running()))
            groups: dict[tuple, list[Job]] = {}
            joins: dict[str, list[Job]] = {}
            for job in batch:
                if job.future.done():  # a client that hung up is skipped
                    continue
                if continuous(job.served):
                    joins.setdefault(job.served.id, []).append(job)
                else:
                    groups.setdefault((job.served.id, job.max_tokens), []).append(job)
            for jobs in joins.values():
                await self._join(jobs)
            self.current = [j for jobs in groups.values() for j in jobs]
            for jobs in groups.values():
                await self._run(jobs, len(batch))
            self.current = []
            for engine in [e for e in self.engines.values() if e.active]:
                await self._step(engine)

    def _drain(self) -> list[Job]:
        batch = []
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _join(self, jobs: list[Job]) -> None:
        """Prefill requests that arrived together in one pass and add them to their rung's running
        batch; if that fails, each joins alone, so a fault fails only the request that causes it."""
        from tunewise.serve.engine import DecodeEngine

        served = jobs[0].served
        engine = self.engines.get(served.id)
        if engine is None:
            engine = self.engines[served.id] = DecodeEngine(served, self._push)
        decoding = [s.job for s in engine.seqs]  # a join may decode their next token too (and finish them)
        try:
            await self.loop.run_in_executor(self.executor, engine.join_many, jobs)
        except Exception as e:  # noqa: BLE001 - isolated below, or returned to the one request
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(e)
                self._settle(decoding)
                return
            log.warning("a prefill of %d requests to %s failed (%s); each joins alone", len(jobs), served.id,
                        type(e).__name__)
            running = {id(s.job) for s in engine.seqs}  # a group prefilled before the fault stays
            for j in jobs:
                if j.result is None and id(j) not in running:
                    await self._join([j])
        self._settle(jobs + decoding)

    async def _step(self, engine) -> None:
        """One decode step; if it fails, every running request is answered alone on the batch path,
        so only the one that causes the fault fails."""
        jobs = [s.job for s in engine.seqs]
        try:
            await self.loop.run_in_executor(self.executor, engine.run, lambda: self.depth() > 0)
        except Exception as e:  # noqa: BLE001 - isolated below
            log.warning("a decode step of %d requests to %s failed (%s); answering each alone", len(jobs),
                        engine.served.id, type(e).__name__)
            for j in engine.fail_all():
                if not j.future.done():
                    await self._run([j], 1)
            return
        self._settle(jobs)

    def _settle(self, jobs: list[Job]) -> None:
        for j in jobs:
            if j.result is not None and not j.future.done():
                j.future.set_result(j.result)

    async def _run(self, jobs: list[Job], batch_size: int) -> None:
        """Answer one group; if it fails, answer each member alone, so only the request that caused
        the fault fails and every other gets exactly the answer it gets alone."""
        loop = asyncio.get_running_loop()
        try:
            preds = await loop.run_in_executor(
                self.executor, run_group, jobs[0].served, [j.record for j in jobs], jobs[0].max_tokens)
        except Exception as e:  # noqa: BLE001 - isolated below, or returned to the one request
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(e)
                return
            log.warning("a batch of %d requests to %s failed (%s); answering each alone", len(jobs),
                        jobs[0].served.id, type(e).__name__)
            for j in jobs:
                await self._run([j], batch_size)
            return
        for j, p in zip(jobs, preds, strict=True):
            j.batch_size = batch_size
            if not j.future.done():
                j.future.set_result(p)
