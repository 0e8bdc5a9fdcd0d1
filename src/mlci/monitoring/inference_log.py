"""The inference log of the local model server: every request's rows appended to Parquet files.

Layout (SPEC14, read with DuckDB's `read_parquet('<folder>/**/*.parquet', hive_partitioning = true,
union_by_name = true)`): `<folder>/date=YYYY-MM-DD/part-<UTC yyyymmddTHHMMSSffffff>-<pid>-<seq>.parquet`,
columns `request_id`, `timestamp` (arrival, UTC), `model_id`, the features under their own names,
`prediction` and for classifiers one `probability_<class>` per class.

A prediction must never wait for, or fail because of, its log. So the request path (`log`) only
appends references (the parsed input frame, the predictions, the request id and arrival time) to a
bounded in-memory queue and returns; when the queue is full the rows are dropped and counted. One
writer thread builds the columns, computes the probabilities (one predict_proba per batch, not one
per request) and writes each batch as whole files: written to a temporary name in the same folder
and renamed, so a reader never sees half a file and a file is never written twice. `close` drains
the queue, so stopping the server (Ctrl-C, SIGTERM) loses nothing that was queued.
"""

from __future__ import annotations

import contextvars
import io
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlci import fs

RESERVED_COLUMNS = ("request_id", "timestamp", "model_id", "prediction")
PROBABILITY_PREFIX = "probability_"


# Seconds the server's shutdown waits for the log writer to write what is queued.
CLOSE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    """What the server knows of the request a prediction answers."""

    request_id: str
    arrived: datetime  # UTC


# Set by the server's middleware for the length of one HTTP request; asyncio.to_thread (which
# runs MLflow's predict) copies the context, so the model wrapper sees the request it serves.
CURRENT_REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar("mlci_request", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request() -> Request:
    """The request being served, or a fresh one (a predict called outside an HTTP request)."""
    found = CURRENT_REQUEST.get()
    return found if found is not None else Request(new_request_id(), datetime.now(timezone.utc))


@dataclass(frozen=True)
class Counts:
    written: int
    dropped: int
    files: int


@dataclass
class _Pending:
    frame: Any
    predictions: Any
    request: Request
    rows: int
    queued: float  # time.monotonic()


class InferenceLogger:
    """A bounded queue of logged predictions and the one thread that writes them to `folder`."""

    def __init__(
        self,
        folder: Path,
        model_id: str,
        *,
        queue_rows: int,
        batch_rows: int,
        flush_seconds: float,
        classifier: bool,
        warn: Callable[[str], None],
    ) -> None:
        self.folder = folder
        self.model_id = model_id
        self.queue_rows = queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.classifier = classifier
        self._warn = warn
        self._predict_proba: Callable[[Any], Any] | None = None
        self._classes: list[str] = []
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0  # queued and being written: what the queue bound counts
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._written = 0
        self._dropped = 0
        self._files = 0
        self._sequence = 0
        self._warned: set[str] = set()

    # -- the request path: constant time, never raises ----------------------------------------

    def log(self, frame: Any, predictions: Any, request: Request) -> None:
        """Queue one prediction's input and output; dropped (and counted) when the queue is full."""
        try:
            rows = len(frame)
        except Exception:  # an input without a length (a scalar): nothing a row can hold
            rows = 1
        item = _Pending(frame, predictions, request, rows, time.monotonic())
        with self._condition:
            if self._stopping:  # a request still in flight when the server's shutdown timed out
                self._drop_locked(rows, "closed", "the log was closed (the server is stopping)")
                return
            if self._pending_rows + rows > self.queue_rows:
                self._drop_locked(rows, "full", f"the queue is full ({self.queue_rows} rows, monitor.log.queue_rows)")
                return
            self._pending.append(item)
            self._pending_rows += rows
            if len(self._pending) == 1 or self._pending_rows >= self.batch_rows:
                self._condition.notify()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, predict_proba: Callable[[Any], Any] | None = None) -> None:
        """Start the writer; `predict_proba` (classifiers) gives the probability columns."""
        if self.classifier and predict_proba is not None:
            self._predict_proba = predict_proba
            owner = getattr(predict_proba, "__self__", None)
            self._classes = [str(c) for c in getattr(owner, "classes_", [])]
        self._thread = threading.Thread(target=self._run, name="mlci-inference-log", daemon=True)
        self._thread.start()

    def close(self) -> Counts:
        """Write everything queued, stop the writer; what was written and dropped in all."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            # Bounded: a stuck disk or a hanging predict_proba must not hang the server's exit.
            self._thread.join(timeout=CLOSE_TIMEOUT)
            if self._thread.is_alive():
                with self._condition:
                    self._drop_locked(
                        self._pending_rows,
                        "shutdown",
                        f"the log writer did not finish within {CLOSE_TIMEOUT:g}s of the server stopping",
                    )
                    self._pending.clear()
                    self._pending_rows = 0
        else:  # never started (the model did not load): what was queued cannot be written
            with self._condition:
                self._drop_locked(self._pending_rows, "closed", "the server stopped before the log started")
                self._pending.clear()
                self._pending_rows = 0
        return self.counts()

    def counts(self) -> Counts:
        with self._condition:
            return Counts(self._written, self._dropped, self._files)

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._ready_locked():
                    timeout = None
                    if self._pending:
                        timeout = max(0.0, self._pending[0].queued + self.flush_seconds - time.monotonic())
                    self._condition.wait(timeout)
                if not self._pending:  # stopping, and everything is written
                    return
                batch: list[_Pending] = []
                rows = 0
                while self._pending and (not batch or rows + self._pending[0].rows <= self.batch_rows):
                    item = self._pending.popleft()
                    batch.append(item)
                    rows += item.rows
            try:
                self._write_batch(batch)
            except Exception as exc:  # a bug in building the columns: never kill the writer
                with self._condition:
                    self._drop_locked(rows, "write", f"{type(exc).__name__}: {exc}")
            finally:
                with self._condition:
                    self._pending_rows -= rows

    def _ready_locked(self) -> bool:
        if not self._pending:
            return self._stopping
        if self._stopping or self._pending_rows >= self.batch_rows:
            return True
        return time.monotonic() >= self._pending[0].queued + self.flush_seconds

    def _drop_locked(self, rows: int, cause: str, why: str) -> None:
        if rows <= 0:
            return
        self._dropped += rows
        # One line per cause until a write succeeds again: a full disk must not flood the log.
        if cause not in self._warned:
            self._warned.add(cause)
            self._warn(
                f"mlci serve: warning: inference log dropped {rows} row(s): {why}; "
                "the predictions were answered, the shutdown line counts every dropped row"
            )

    def _write_batch(self, batch: Sequence[_Pending]) -> None:
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        frames: list[Any] = []
        answers: list[Any] = []
        given: list[dict[str, Any] | None] = []
        kept: list[_Pending] = []
        sizes: list[int] = []
        for item in batch:
            try:
                frame = item.frame if isinstance(item.frame, pd.DataFrame) else pd.DataFrame(item.frame)
                prediction, probabilities = _split_output(item.predictions, len(frame))
            except Exception as exc:  # an input or output this log cannot hold as rows
                with self._condition:
                    self._drop_locked(item.rows, "shape", f"{type(exc).__name__}: {exc}")
                continue
            frames.append(frame)
            answers.append(prediction)
            given.append(probabilities)
            kept.append(item)
            sizes.append(len(frame))
        if not frames:
            return
        features = _stack(frames)
        rows = len(features)
        owner = np.repeat(np.arange(len(kept)), sizes)  # the request each row came from
        # The request's own columns straight to Arrow (pandas would round-trip the tz-aware times).
        columns: dict[str, Any] = {
            "request_id": pa.array([i.request.request_id for i in kept], pa.string()).take(owner),
            "timestamp": pa.array([i.request.arrived for i in kept], pa.timestamp("us", tz="UTC")).take(owner),
            "model_id": pa.array([self.model_id] * rows, pa.string()),
        }
        inputs = pa.Table.from_pandas(features, preserve_index=False)
        for name, column in zip(inputs.column_names, inputs.columns, strict=True):
            if name not in RESERVED_COLUMNS and not name.startswith(PROBABILITY_PREFIX):
                columns[name] = column
        columns["prediction"] = pa.array(np.concatenate(answers) if len(answers) > 1 else answers[0])
        for name, values in self._probabilities(features, given).items():
            columns[name] = pa.array(values, pa.float64())
        days = np.array([i.request.arrived.strftime("%Y-%m-%d") for i in kept])[owner]
        self._write_partitions(pa.table(columns), days)

    def _probabilities(self, features: Any, given: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        import numpy as np

        if all(p is not None for p in given):  # the server already answers them (--probabilities)
            answered = [p for p in given if p is not None]
            if all(p.keys() == answered[0].keys() for p in answered):
                return {name: np.concatenate([p[name] for p in answered]) for name in answered[0]}
        if self._predict_proba is None:
            return {}
        table = self._predict_proba(features)
        names = self._classes if len(self._classes) == table.shape[1] else [str(i) for i in range(table.shape[1])]
        return {f"{PROBABILITY_PREFIX}{name}": table[:, i] for i, name in enumerate(names)}

    def _write_partitions(self, table: Any, days: Any) -> None:
        import pyarrow as pa

        found = sorted(set(days.tolist()))
        for day in found:
            part = table.filter(pa.array(days == day)) if len(found) > 1 else table
            for start in range(0, part.num_rows, self.batch_rows):
                chunk = part.slice(start, self.batch_rows)
                try:
                    self._write_file(self.folder / f"date={day}", chunk)
                except Exception as exc:  # unwritable folder, full disk: count it, keep serving
                    with self._condition:
                        self._drop_locked(chunk.num_rows, "write", f"cannot write under {self.folder}: {exc}")
                    continue
                with self._condition:
                    self._written += chunk.num_rows
                    self._files += 1
                    self._warned.clear()

    def _write_file(self, folder: Path, chunk: Any) -> None:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(chunk, buffer)
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            self._sequence += 1
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            path = folder / f"part-{stamp}-{os.getpid()}-{self._sequence:06d}.parquet"
            if not path.exists():
                break
        temp = fs.create_temp(path, buffer.getvalue())
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def _stack(frames: Sequence[Any]) -> Any:
    """One frame of many requests' rows, in order.

    pandas' concat costs ~0.5 ms per small frame (it checks every column of every frame), which
    for a batch of one-row requests is most of the writer's time. Requests to one server nearly
    always share columns and dtypes (MLflow enforces the model's signature), and an all-numeric
    run of them is stacked as one numpy array instead; anything else goes through concat.
    """
    import numpy as np
    import pandas as pd

    runs: list[tuple[tuple[Any, ...], list[Any]]] = []
    for frame in frames:
        key = (tuple(frame.columns), tuple(frame.dtypes))
        if runs and runs[-1][0] == key:
            runs[-1][1].append(frame)
        else:
            runs.append((key, [frame]))
    parts = []
    for (names, dtypes), run in runs:
        if len(run) == 1:
            parts.append(run[0].reset_index(drop=True))
        elif len(set(dtypes)) == 1 and isinstance(dtypes[0], np.dtype) and dtypes[0].kind in "biuf":
            parts.append(pd.DataFrame(np.vstack([f.to_numpy() for f in run]), columns=list(names)))
        else:
            parts.append(pd.concat(run, ignore_index=True))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _split_output(predictions: Any, rows: int) -> tuple[Any, dict[str, Any] | None]:
    """(the prediction column as a numpy array, the probability columns the answer carries or None)."""
    import numpy as np
    import pandas as pd

    probabilities = None
    if isinstance(predictions, pd.DataFrame):
        if "prediction" in predictions.columns:
            named = [c for c in predictions.columns if str(c).startswith(PROBABILITY_PREFIX)]
            probabilities = {str(c): predictions[c].to_numpy(dtype="float64") for c in named} or None
            column: Any = predictions["prediction"].to_numpy()
        elif predictions.shape[1] == 1:
            column = predictions.iloc[:, 0].to_numpy()
        else:
            raise ValueError(f"an answer of {predictions.shape[1]} columns has no 'prediction' column")
    else:
        column = np.asarray(predictions)
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        if column.ndim != 1:
            raise ValueError(f"an answer of shape {column.shape} is not one prediction per row")
    if len(column) != rows:
        raise ValueError(f"{len(column)} predictions for {rows} input rows")
    return column, probabilities
