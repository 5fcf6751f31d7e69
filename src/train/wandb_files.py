"""W&B offline runs read back from their ``run-<id>.wandb`` files, with no server.

The file is W&B's transaction log: a 7-byte ``:W&B`` header, then LevelDB log records (32 KiB blocks, each
record a 7-byte header: checksum, length, type FULL/FIRST/MIDDLE/LAST), each one a protobuf ``Record`` of
``wandb.proto.wandb_internal_pb2``. wandb releases that ship ``wandb.sdk.internal.datastore`` read it with
that; newer ones (where the Go core writes it) only ship the protobuf, so the framing is read here.

The file on disk is a prefix of what was logged: wandb-core keeps the records in memory and writes them out
every ``x_transaction_log_flush_interval`` (15 s by default in wandb 0.31), and a killed launch's core exits
without writing the rest. ``LogTail`` follows a running launch's file, so that the logger can wait until a
record is on disk; a record cut short at the end of the file is left for the next read.

This is the one module that depends on what wandb does not publish: the file's format and the private setting
``x_transaction_log_flush_interval``. Where a wandb release renames the setting or changes the format,
``EpochsOnDisk`` and ``steps_of_earlier_launches`` warn once and step aside, and one guarantee weakens: a SIGKILL
can take the rows of its last seconds (15 s by default) from that launch's ``.wandb`` file. The run dir still has
them (``metrics.csv``, ``results.json``), and training goes on as ever. ``make test`` runs the W&B tests with the
newest wandb and with the lowest one pyproject.toml allows.
"""
import json
import logging
import re
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

log = logging.getLogger(__name__)
FLUSH_SETTING = "x_transaction_log_flush_interval"  # wandb >= 0.2x: seconds between writes of the .wandb file
FLUSH_INTERVAL_S = 0.1
FLUSH_TIMEOUT_S = 10.0  # an epoch row not on disk by then: warn, and stop waiting for the rest of the launch
WEAKER = ("a kill can take the rows of its last seconds from this launch's .wandb file (metrics.csv keeps them; "
          "a resumed run logs them again)")

BLOCK = 32768
FILE_HEADER = 7  # b":W&B", magic 0xBEE1, version 0
RECORD_HEADER = 7  # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# a launch started in the same second as an earlier one of the same id gets a suffix: offline-run-DATE-ID-1
FOLDER = re.compile(r"^offline-run-(\d{8}_\d{6})-(\w+)(?:-(\d+))?$")


@dataclass
class OfflineRun:
    """One ``offline-run-*`` folder: one launch of a run (a resumed run leaves one per launch)."""
    folder: Path
    run_id: str
    started: str  # the folder's timestamp, YYYYMMDD_HHMMSS
    sweep_id: str = ""
    group: str = ""
    job_type: str = ""
    tags: List[str] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)
    preempting: bool = False
    exit_code: Optional[int] = None

    @property
    def epochs(self) -> List[int]:
        return [int(row["epoch"]) for row in self.history if "epoch" in row]


def _frames(data: bytes, start: int) -> Iterator[Tuple[bytes, int]]:
    """(record, file offset after it) for each whole record in ``data``, the file's bytes from offset ``start``
    (the end of a whole record); a record cut short at the end, or its fragments, are not yielded."""
    offset, pending = 0, b""
    while offset + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - (start + offset) % BLOCK
        if left_in_block < RECORD_HEADER:  # the block's tail is padding
            offset += left_in_block
            continue
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        end = offset + RECORD_HEADER + length
        if end > len(data):  # written in part: the rest comes with the next flush, if ever
            return
        chunk, offset = data[offset + RECORD_HEADER: end], end
        if kind == 0 and length == 0:  # zero padding (a preallocated or cut file)
            continue
        if kind == FULL:
            yield chunk, start + offset
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk, start + offset
            pending = b""


def _payloads(data: bytes) -> Iterator[bytes]:
    """The LevelDB log's records, reassembled from their fragments."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (no :W&B header)")
    for payload, _ in _frames(data[FILE_HEADER:], FILE_HEADER):
        yield payload


class LogTail:
    """A growing ``.wandb`` file's history steps on disk, read on from where the last read stopped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = FILE_HEADER  # the end of the last whole record read
        self.last_step = -1

    def read(self) -> List[int]:
        """The steps of the history records written out since the last read."""
        from wandb.proto import wandb_internal_pb2

        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = file.read()
        steps = []
        for payload, end in _frames(data, self.offset):
            self.offset = end
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            if record.WhichOneof("record_type") == "history":
                steps.append(record.history.step.num)
        self.last_step = max([self.last_step, *steps])
        return steps


def _raw_records(path: Path) -> Iterator[bytes]:
    try:
        from wandb.sdk.internal import datastore  # wandb releases with the Python reader
    except ImportError:
        yield from _payloads(Path(path).read_bytes())
        return
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    while (data := store.scan_data()) is not None:
        yield data


def read_records(path: Path) -> Iterator[Any]:
    """Every ``wandb_internal_pb2.Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    for data in _raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        yield record


def _value(item) -> Any:
    """An item's value: JSON text, or (newer history items) one typed field of the ``value`` oneof."""
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if kind in (None, "none"):
        return None
    value = getattr(item, kind)
    return json.loads(value) if kind == "json" else value


def _items(items) -> Dict[str, Any]:
    """Config, summary or history items -> {dotted key: value}."""
    return {item.key or "/".join(item.nested_key): _value(item) for item in items}


def read_offline_run(folder: Path) -> OfflineRun:
    folder = Path(folder)
    match = FOLDER.match(folder.name)
    files = sorted(folder.glob("run-*.wandb"))
    if not match or not files:
        raise ValueError(f"{folder} is not a W&B offline run folder (offline-run-DATE_TIME-ID/run-ID.wandb)")
    run = OfflineRun(folder=folder, run_id=match.group(2), started=match.group(1))
    for record in read_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.sweep_id, run.group = record.run.run_id, record.run.sweep_id, record.run.run_group
            run.job_type, run.tags = record.run.job_type, list(record.run.tags)
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "history":
            row = _items(record.history.item)
            run.history.append({"_step": record.history.step.num, **row})
        elif kind == "preempting":
            run.preempting = True
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def find_offline_runs(paths: List[Path]) -> List[Path]:
    """Every ``offline-run-*`` folder under ``paths`` (a run dir, a sweep folder, a ``wandb`` folder)."""
    found = []
    for path in paths:
        path = Path(path)
        candidates = [path] if FOLDER.match(path.name) else sorted(path.rglob("offline-run-*"))
        found += [folder for folder in candidates if folder.is_dir() and list(folder.glob("run-*.wandb"))]
    return found


def by_run(folders: List[Path]) -> Dict[str, List[Path]]:
    """Folders grouped by run id, each group in start order (a resumed run's halves, oldest first)."""
    groups: Dict[str, List[Path]] = {}
    def started(folder: Path) -> Tuple[str, int]:
        match = FOLDER.match(folder.name)
        return match.group(1), int(match.group(3) or 0)

    for folder in sorted(folders, key=started):
        groups.setdefault(FOLDER.match(folder.name).group(2), []).append(folder)
    return groups


def launch_files(wandb_dir: Path, run_id: str) -> List[Path]:
    """The ``.wandb`` file of every launch of run ``run_id`` under ``wandb_dir`` (a run dir's ``wandb``),
    offline or online, oldest first."""
    launch = re.compile(rf"^(?:offline-)?run-(\d{{8}}_\d{{6}})-{re.escape(run_id)}(?:-(\d+))?$")
    found = []
    for folder in Path(wandb_dir).glob(f"*run-*-{run_id}*"):
        match = launch.match(folder.name)
        if match and (folder / f"run-{run_id}.wandb").is_file():
            found.append(((match.group(1), int(match.group(2) or 0)), folder / f"run-{run_id}.wandb"))
    return [path for _, path in sorted(found)]


# -- a killed launch keeps its finished epochs: what no public wandb API gives ----------------------------------
def flush_settings() -> Dict[str, float]:
    """The setting that makes wandb-core write the ``.wandb`` file out often, where this wandb has it; {} where it
    does not (``EpochsOnDisk.follow`` then says so once)."""
    import wandb

    return {FLUSH_SETTING: FLUSH_INTERVAL_S} if FLUSH_SETTING in getattr(wandb.Settings, "model_fields", {}) else {}


class EpochsOnDisk:
    """One launch's ``.wandb`` file, followed so that the logger can wait until an epoch row is on disk."""

    def __init__(self, sync_file: Path):
        self.tail = LogTail(sync_file)

    @classmethod
    def follow(cls, run) -> Optional["EpochsOnDisk"]:
        if not flush_settings():
            warnings.warn(f"this wandb has no {FLUSH_SETTING} setting: {WEAKER}", stacklevel=2)
            return None
        return cls(Path(run.settings.sync_file))

    def wait_for(self, step: int) -> bool:
        """True once the row at ``step`` is in the file; False (with a warning) when the file cannot be followed
        or it is not there after ``FLUSH_TIMEOUT_S``: stop waiting for the rest of the launch."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        try:
            self.tail.read()
            while self.tail.last_step < step:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"step {step} not in {self.tail.path} after {FLUSH_TIMEOUT_S:.0f} s")
                time.sleep(FLUSH_INTERVAL_S / 4)
                self.tail.read()
            return True
        except Exception as error:  # noqa: BLE001 - W&B must never stop a training run
            warnings.warn(f"W&B's .wandb file could not be followed ({type(error).__name__}: {error}); no longer "
                          f"waiting for each epoch to be written out: {WEAKER}", stacklevel=2)
            return False


def steps_of_earlier_launches(run) -> Optional[Set[int]]:
    """The history steps that the ``.wandb`` files of this run's earlier launches hold; None (with a warning)
    where they cannot be read."""
    this_launch = Path(run.settings.sync_file)
    try:
        return {step for path in launch_files(this_launch.parent.parent, run.id) if path != this_launch
                for step in LogTail(path).read()}
    except Exception as error:  # noqa: BLE001 - an unreadable earlier file must not stop the run
        warnings.warn(f"W&B: the earlier launches' .wandb files could not be read ({type(error).__name__}: "
                      f"{error}); the rows a kill took from them are not logged again", stacklevel=2)
        return None
