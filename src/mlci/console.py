"""What mlci prints, and where: one place that knows --quiet, --verbose and --json.

- normal: progress and failures, passing checks summarised in one line, the final line.
- --verbose: also every passing check and the tools' full output.
- --quiet: only errors and the final line.
- --json: the machine-readable result alone on stdout (the stage record or the run summary);
  everything a person reads goes to stderr.

The CLI boundary (cli.py) configures it once per command. Tools' output (pytest, pre-commit)
is passed through `run_tool`, so mlci knows whether the terminal is mid-line (pytest's progress
dots) and starts its own lines on a new one.

Thread-safety (`mlci run` runs its checks in threads): writes to the real streams hold one lock,
so lines never interleave; a thread inside `captured()` writes nothing to the streams but keeps
its text, in order, for the caller to `replay` as one block (each stage's output stays whole).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mlci import providers
from mlci.log_guard import LogGuard

QUIET, NORMAL, VERBOSE = 0, 1, 2


@dataclass
class _State:
    level: int = NORMAL
    json: bool = False
    # Did the last text written to each stream end a line? (fd number -> bool)
    mid_line: dict[int, bool] | None = None
    # The result --json prints: set by each stage, replaced by `mlci run`'s summary.
    result: dict[str, Any] | None = None
    # The LogGuard of each stream (fd number -> guard), following its lines.
    guards: dict[int, LogGuard] | None = None


_state = _State(mid_line={}, guards={})
# One writer at a time on the real streams: a stage's text, its guard state and mid_line agree.
_lock = threading.RLock()
_local = threading.local()  # .capture: the Capture this thread writes to, if any
# The tools run_tool is running now (from any thread), so an interruption can stop them all.
_tools: set[subprocess.Popen[bytes]] = set()
_stopping = threading.Event()
# What else stop_tools stops: work in this process no signal reaches (a DuckDB query's interrupt).
_stop_hooks: list[Callable[[], object]] = []


@dataclass
class Capture:
    """What one thread wrote while inside `captured()`: (stream, text, trusted) in order."""

    chunks: list[tuple[TextIO, str, bool]]
    mid_line: dict[int, bool]


def _capture() -> Capture | None:
    capture: Capture | None = getattr(_local, "capture", None)
    return capture


def new_capture() -> Capture:
    return Capture(chunks=[], mid_line={})


@contextlib.contextmanager
def captured(into: Capture | None = None) -> Iterator[Capture]:
    """Keep what this thread writes (mlci's lines, print(), its tools' output) instead of
    writing it, in `into` (else a new Capture); `replay` writes it later, whole, through the
    guards as if written then."""
    capture = into if into is not None else new_capture()
    saved = _capture()
    _local.capture = capture
    try:
        yield capture
    finally:
        _local.capture = saved


def current_capture() -> Capture | None:
    """The Capture this thread writes to (None: the streams), to hand to a helper thread it
    starts (`writing_to`), whose lines then stay in the same block."""
    return _capture()


@contextlib.contextmanager
def writing_to(capture: Capture | None) -> Iterator[None]:
    """Write, in this thread, where the thread that gave `capture` (current_capture) writes:
    into that Capture, or to the streams for None."""
    saved = _capture()
    _local.capture = capture
    try:
        yield
    finally:
        _local.capture = saved


def bound(write: Callable[[str], None]) -> Callable[[str], None]:
    """`write` (progress, say ...) for a helper thread this one starts: what it writes goes
    where this thread's text goes, into its Capture (`mlci run`'s block) or to the streams."""
    capture = _capture()

    def in_place(text: str) -> None:
        with writing_to(capture):
            write(text)

    return in_place


def replay(capture: Capture) -> None:
    """Write what a thread kept (`captured`), in order, on a line of its own."""
    with _lock:
        new_line()
        for stream, text, trusted in list(capture.chunks):  # a copy: the thread may still be writing
            _write(stream, text, trusted=trusted)


def configure(*, quiet: bool = False, verbose: bool = False, json: bool = False) -> None:
    _state.level = QUIET if quiet else VERBOSE if verbose else NORMAL
    _state.json = json
    _state.result = None
    _state.mid_line = {}
    _state.guards = {}
    _stopping.clear()


def level() -> int:
    return _state.level


def verbose() -> bool:
    return _state.level >= VERBOSE


def quiet() -> bool:
    return _state.level <= QUIET


def json_mode() -> bool:
    return _state.json


def human() -> TextIO:
    """The stream for text a person reads: stdout, or stderr when stdout carries JSON."""
    return sys.stderr if _state.json else sys.stdout


def _write(stream: TextIO, text: str, *, trusted: bool = False) -> None:
    """The one place mlci's output is written. Text may hold user-controlled parts (column names,
    test ids, tool output), so on CI it passes the provider's LogGuard (log_guard.py) and can never
    be read as a workflow command; only `ci_command` (mlci's own annotations) writes it as it is."""
    raw = stream.inner if isinstance(stream, GuardedStream) else stream
    capture = _capture()
    if capture is not None:
        capture.chunks.append((raw, text, trusted))
        if text:
            capture.mid_line[_fd(raw)] = not text.endswith("\n")
        return
    with _lock:
        raw.write(_guard(raw).feed(text, neutralise=not trusted))
        raw.flush()
        if text:
            assert _state.mid_line is not None
            _state.mid_line[_fd(raw)] = not text.endswith("\n")


def _guard(stream: TextIO) -> LogGuard:
    """The guard of a stream for the CI system we run on now (it follows the stream's lines)."""
    assert _state.guards is not None
    runtime = providers.detect()
    guard = _state.guards.get(_fd(stream))
    if guard is None or guard.runtime is not runtime:
        guard = _state.guards[_fd(stream)] = LogGuard(runtime)
    return guard


class GuardedStream:
    """sys.stdout or sys.stderr for the length of a command (cli.main): whatever else prints
    (a stage's print(), a library) is guarded like mlci's own lines."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        _write(self, text)  # type: ignore[arg-type]
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """Guard sys.stdout and sys.stderr while a command runs; restored afterwards."""
    saved = sys.stdout, sys.stderr
    sys.stdout = GuardedStream(saved[0])
    sys.stderr = GuardedStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _fd(stream: TextIO) -> int:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # a test's capture buffer: key by identity
        return id(stream)


def new_line() -> None:
    """End a line a tool left open (pytest's dots), on both streams, before mlci writes one."""
    capture = _capture()
    mid_line = capture.mid_line if capture is not None else _state.mid_line
    assert mid_line is not None
    with _lock:
        for stream in (sys.stdout, sys.stderr):
            if mid_line.get(_fd(stream)):
                _write(stream, "\n")
    # stdout and stderr are often one terminal: a line open on either is open on both.


def say(text: str) -> None:
    """Normal output (what a stage did, its failures); hidden by --quiet."""
    if _state.level >= NORMAL:
        new_line()
        _write(human(), text + "\n")


def detail(text: str) -> None:
    """Only with --verbose (each passing check, full tool output)."""
    if _state.level >= VERBOSE:
        new_line()
        _write(human(), text + "\n")


def progress(text: str) -> None:
    """Progress lines of `mlci run` (stderr); hidden by --quiet."""
    if _state.level >= NORMAL:
        new_line()
        _write(sys.stderr, text + "\n")


def final(text: str) -> None:
    """The one line that says how a command ended: shown even with --quiet, never on stdout
    with --json."""
    new_line()
    _write(human(), text + "\n")


def error(text: str) -> None:
    """An error line: always, on stderr, on a line of its own."""
    new_line()
    _write(sys.stderr, text + "\n")


def annotation(text: str | None) -> None:
    """A CI annotation line (::error ...): the CI system reads it from the log, so it is
    printed even with --quiet."""
    if text:
        ci_command(text)


def ci_command(text: str) -> None:
    """One of mlci's own CI commands (an annotation, an output variable), on a line of its own
    and not neutralised: `text` must be built by the runtime adapter, which escapes every value in it."""
    new_line()
    _write(human(), text + "\n", trusted=True)


def set_result(payload: Mapping[str, Any]) -> None:
    _state.result = dict(payload)


def result() -> dict[str, Any] | None:
    return _state.result


def run_tool(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], show: bool = True) -> tuple[int, str]:
    """Run a tool, passing its output (stdout and stderr merged) through as it comes.

    The output is also returned, so a stage can parse it and, with --quiet, print it only when
    the tool failed. On Ctrl-C or SIGTERM the tool is stopped before the interruption goes on;
    in a thread, which never sees the signal, `stop_tools` stops it and this raises
    KeyboardInterrupt there, so the stage records the interruption as it would in the main thread.
    """
    if _stopping.is_set():
        raise KeyboardInterrupt
    process = subprocess.Popen(list(command), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with _lock:
        _tools.add(process)
    assert process.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks: list[str] = []
    passthrough = show and _state.level >= NORMAL
    # Where the runner can stop reading commands (GitHub's ::stop-commands::), the tool's output
    # (test ids, column names it echoes) is fenced with a token the tool cannot know, so the
    # runner reads none of it as a command; elsewhere every line passes the provider's LogGuard.
    runtime = providers.detect() if passthrough else None
    fence = runtime.stop_commands(secrets.token_hex(16)) if runtime else None
    fenced = fence is not None
    try:
        if fence:
            ci_command(fence[0])
        fd = process.stdout.fileno()
        while block := os.read(fd, 65536):
            text = decoder.decode(block)
            chunks.append(text)
            if passthrough and text:
                _write(human(), text, trusted=fenced)
        tail = decoder.decode(b"", final=True)
        chunks.append(tail)
        if passthrough and tail:
            _write(human(), tail, trusted=fenced)
        code = process.wait()
        if _stopping.is_set():
            raise KeyboardInterrupt  # stop_tools ended it: an interruption, not the tool's verdict
    except BaseException:
        _stop(process)
        raise
    finally:
        with _lock:
            _tools.discard(process)
        process.stdout.close()
        if fence:  # resume on a line of its own, or the runner never sees the token
            ci_command(fence[1])
    return code, "".join(chunks)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_tools() -> None:
    """Stop every tool run_tool is running, in any thread, and refuse to start more: the main
    thread calls it on Ctrl-C or SIGTERM while other threads run stages (`mlci run`)."""
    _stopping.set()
    with _lock:
        running = list(_tools)
        hooks = list(_stop_hooks)
    for process in running:
        if process.poll() is None:
            process.terminate()
    for hook in hooks:
        _call_hook(hook)


def on_stop(hook: Callable[[], object]) -> Callable[[], None]:
    """Have stop_tools call `hook` too (at once if it was called already), until the function
    returned is called: for work in this process that no signal reaches (a DuckDB scan)."""
    with _lock:
        _stop_hooks.append(hook)
    if _stopping.is_set():
        _call_hook(hook)

    def remove() -> None:
        with _lock:
            if hook in _stop_hooks:
                _stop_hooks.remove(hook)

    return remove


def _call_hook(hook: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):  # best effort: the stage is recorded as interrupted all the same
        hook()


def stopping() -> bool:
    """Whether stop_tools was called: a stage finishing now was interrupted."""
    return _stopping.is_set()


def dump(text: str) -> None:
    """A tool's captured output, shown with --quiet only because the tool failed."""
    if text.strip():
        new_line()
        _write(sys.stderr, text if text.endswith("\n") else text + "\n")
