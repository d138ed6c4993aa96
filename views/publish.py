"""The published read copy: what every reader opens while the ingestion service owns the store.

DuckDB lets one process hold a file for writing and no other process open it meanwhile. So the
writer, between two batches (holding the lock its batches take), checkpoints the store, which leaves
the whole committed state in the main file, copies that file beside it and renames the copy into
place. Readers never see half a batch; one that has the previous copy open keeps reading it, the
next open gets the new one. A file copy takes tens of milliseconds where re-inserting the rows into
a fresh database takes seconds (docs/benchmarks.md).
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from views.store import first_line

log = logging.getLogger("chargeback.publish")


def copy_path_for(db: Path) -> Path:
    """`data/chargeback.duckdb` is published as `data/chargeback.read.duckdb`."""
    return db.with_name(f"{db.stem}.read{db.suffix or '.duckdb'}")


class StoreFile:
    """A read handle on the store file, opened once and closed only after DuckDB lets go.

    DuckDB's lock on the file is a POSIX record lock, and POSIX drops all of a process's locks on
    a file when the process closes *any* descriptor of it. Opening the store by path to copy it and
    closing it again would silently unlock the store for a second writer. So the copy reads through
    this one descriptor, which stays open.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def copy_to(self, target: Path) -> None:
        size = os.fstat(self.fd).st_size
        with target.open("wb") as out:
            done = 0
            while done < size:
                sent = os.sendfile(out.fileno(), self.fd, done, size - done)
                if sent == 0:
                    break
                done += sent

    def close(self) -> None:
        os.close(self.fd)


def publish(
    con: duckdb.DuckDBPyConnection, store: StoreFile, target: Path, write_lock: threading.Lock
) -> None:
    """Copy the store file behind `con` to `target`, atomically, with no batch half-written."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cursor = con.cursor()
    try:
        with write_lock:
            cursor.execute("CHECKPOINT")
            store.copy_to(staging)
        os.replace(staging, target)
    finally:
        cursor.close()
        staging.unlink(missing_ok=True)


def sql_literal(text: str) -> str:
    """A path as a SQL string literal, for ATTACH, which takes no bound parameters."""
    return "'" + text.replace("'", "''") + "'"


class Publisher:
    """Publishes the copy often enough that it is never more than `max_age` seconds behind.

    A copy that took T seconds to make is replaced by one whose snapshot starts at most
    `max_age - 2T` later, so its data is at most `max_age` old when replaced. When nothing was
    written since the last copy, the file's time is only touched: it is still current.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        db: Path,
        write_lock: threading.Lock,
        max_age: float,
        changes: Callable[[], int],
        before_copy: Callable[[], None] = lambda: None,
    ) -> None:
        self.con = con
        self.store = StoreFile(db)  # closed by the service after the store's connection
        self.write_lock = write_lock
        self.target = copy_path_for(db)
        # A copy interrupted by a crash leaves its staging file; this process owns the store now.
        for stale in self.target.parent.glob(f".{self.target.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        self.max_age = max_age
        self.changes = changes  # a counter that grows with every committed batch
        self.before_copy = before_copy
        self.published_changes = -1
        self.last_duration = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_now(self) -> None:
        seen = self.changes()
        self.before_copy()
        if seen == self.published_changes and self.target.exists():
            os.utime(self.target)
            return
        started = time.monotonic()
        publish(self.con, self.store, self.target, self.write_lock)
        self.last_duration = time.monotonic() - started
        self.published_changes = seen
        if self.last_duration > self.max_age / 3:
            log.warning(
                "publishing the read copy took %.1f s: it may lag up to %.0f s behind (raise"
                " --publish-interval)",
                self.last_duration,
                2 * self.last_duration,
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(max(0.2, self.max_age - 2 * self.last_duration)):
            try:
                self.publish_now()
            except (duckdb.Error, OSError) as error:
                log.error("publishing the read copy failed: %s", first_line(error))
