"""Deleting a session everywhere, purging by age, and re-running after a partial failure."""

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import storage

from pipecat_audio_capture import (
    CompositeAudioStorage,
    InvalidIdError,
    LocalAudioStorage,
    Spool,
    StorageConfigError,
    StorageError,
    UnsafePathError,
    delete_session,
    plan_delete_session,
    plan_purge,
    purge,
)
from pipecat_audio_capture.ids import new_id
from pipecat_audio_capture.records import TranscriptRecord
from pipecat_audio_capture.storage.gcs import GCSAudioStorage
from pipecat_audio_capture.storage.index import DeletedRows, SessionRetention
from pipecat_audio_capture.wav import encode_wav

from support.gcs import FakeGCS, Fault, FaultProxy
from support.index import T0, IndexBackend, at, make_segment, make_transcript
from support.reliability import pending_segment

WAV = encode_wav([b"\x01\x00" * 1600], 16000, 1)


async def record_session(
    files: LocalAudioStorage, index: IndexBackend, *, start_ms: float = 0.0, segments: int = 2
) -> str:
    """A session with stored audio, its segment rows and one transcript per turn."""
    session_id = new_id()
    for number in range(segments):
        meta = make_segment(session_id, start_ms=start_ms + number * 2000)
        url = await files.store_segment(session_id, meta.segment_id, "user", WAV)
        meta.audio_url, meta.byte_size = url, len(WAV)
        await index.store.save_metadata(session_id, meta)
        await index.store.save_transcript(
            make_transcript(session_id, meta.turn_id, "user", f"turn {number}", at_ms=start_ms)
        )
    return session_id


async def rows_of(index: IndexBackend, session_id: str) -> tuple[int, int]:
    counts = []
    for table in ("session_audio_segments", "session_transcripts"):
        [(count,)] = await index.fetch(
            f"SELECT count(*) FROM {table} WHERE CAST(session_id AS TEXT) = '{session_id}'"
        )
        counts.append(int(count))
    return counts[0], counts[1]


async def doomed_and_kept(
    tmp_path: Path, index: IndexBackend
) -> tuple[LocalAudioStorage, Spool, str, str]:
    """Two sessions (3 and 2 segments), each with audio, rows, and a segment and a transcript
    in the spool."""
    files = LocalAudioStorage(tmp_path / "recordings")
    doomed = await record_session(files, index, segments=3)
    kept = await record_session(files, index)
    spool = Spool(tmp_path / "spool")
    for session_id in (doomed, kept):
        await spool.put_segment(pending_segment(session_id), reason="write_failed")
        record = TranscriptRecord(session_id, new_id(), "assistant", "hi", False, T0)
        await spool.put_transcript(record, reason="write_failed")
    return files, spool, doomed, kept


async def test_deleting_a_session_removes_its_spool_audio_and_rows_and_nothing_else(
    tmp_path: Path, index: IndexBackend
) -> None:
    files, spool, doomed, kept = await doomed_and_kept(tmp_path, index)

    report = await delete_session(
        doomed, audio=files, index=index.store, spool_dir=tmp_path / "spool"
    )

    assert (report.spool_entries, report.audio_objects) == (2, 3)
    assert (report.segment_rows, report.transcript_rows) == (3, 3)
    assert not (files.root / doomed).exists() and not (spool.root / doomed).exists()
    assert await rows_of(index, doomed) == (0, 0)
    assert len(list((files.root / kept).iterdir())) == 2
    assert await rows_of(index, kept) == (2, 2)
    assert len((await spool.scan()).segments) == 1

    again = await delete_session(doomed, audio=files, index=index.store, spool_dir=spool.root)

    assert (again.spool_entries, again.audio_objects, again.segment_rows) == (0, 0, 0)


class FailingOnce:
    """An index whose row deletion fails the first time, like a database that went away."""

    def __init__(self, index: SessionRetention) -> None:
        self.index = index
        self.failures = 1

    async def sessions_older_than(self, cutoff: datetime) -> list[str]:
        return await self.index.sessions_older_than(cutoff)

    async def delete_session(self, session_id: str) -> DeletedRows:
        if self.failures:
            self.failures -= 1
            raise StorageError("database unavailable")
        return await self.index.delete_session(session_id)


async def test_a_deletion_that_fails_before_the_rows_is_finished_by_a_rerun(
    tmp_path: Path, index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    session_id = await record_session(files, index)
    flaky = FailingOnce(index.store)

    with pytest.raises(StorageError, match="database unavailable"):
        await delete_session(session_id, audio=files, index=flaky)

    # Audio went first; the rows, the list purge works from, are still there to find it again.
    assert not (files.root / session_id).exists()
    assert await rows_of(index, session_id) == (2, 2)
    assert await flaky.sessions_older_than(at(10_000_000)) == [session_id]

    report = await delete_session(session_id, audio=files, index=flaky)

    assert (report.audio_objects, report.segment_rows, report.transcript_rows) == (0, 2, 2)
    assert await rows_of(index, session_id) == (0, 0)


async def test_a_dry_run_counts_exactly_what_the_deletion_then_removes(
    tmp_path: Path, index: IndexBackend
) -> None:
    files, spool, doomed, kept = await doomed_and_kept(tmp_path, index)
    (files.root / doomed / "notes.txt").write_text("not ours: neither counted nor deleted")
    where = {"audio": files, "index": index.store, "spool_dir": spool.root}

    plan = await plan_delete_session(doomed, **where)
    again = await plan_delete_session(doomed, **where)
    report = await delete_session(doomed, **where)

    assert plan == again == report
    assert (plan.spool_entries, plan.audio_objects, plan.segment_rows) == (2, 3, 3)
    assert not plan.empty
    assert (await plan_delete_session(doomed, **where)).empty
    assert (await plan_delete_session(kept, **where)).audio_objects == 2


async def test_a_purge_dry_run_finds_what_purge_then_deletes(
    tmp_path: Path, index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    day_ms = 24 * 3600 * 1000
    old = await record_session(files, index)
    await record_session(files, index, start_ms=40 * day_ms)
    where = {"audio": files, "index": index.store, "now": at(45 * day_ms)}

    plan = await plan_purge(older_than=timedelta(days=30), **where)
    assert [counted.session_id for counted in plan.deleted] == [old]
    assert await rows_of(index, old) == (2, 2)
    report = await purge(older_than=timedelta(days=30), **where)

    assert (plan.cutoff, plan.deleted, plan.failed) == (report.cutoff, report.deleted, {})


async def test_purge_deletes_only_sessions_whose_last_audio_or_transcript_is_old(
    tmp_path: Path, index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    day_ms = 24 * 3600 * 1000
    old = await record_session(files, index)
    recent = await record_session(files, index, start_ms=40 * day_ms)
    # Old audio, but a transcript saved 40 days later: the call's last activity is recent.
    late_transcript = await record_session(files, index)
    await index.store.save_transcript(
        make_transcript(late_transcript, new_id(), "assistant", "later", at_ms=40 * day_ms)
    )
    transcript_only = new_id()
    await index.store.save_transcript(
        make_transcript(transcript_only, new_id(), "user", "no audio", at_ms=0)
    )
    now = at(45 * day_ms)

    report = await purge(older_than=timedelta(days=30), audio=files, index=index.store, now=now)

    assert report.cutoff == at(15 * day_ms)
    assert sorted(deleted.session_id for deleted in report.deleted) == sorted(
        [old, transcript_only]
    )
    assert report.failed == {}
    assert sorted(path.name for path in files.root.iterdir()) == sorted([recent, late_transcript])
    assert await rows_of(index, old) == (0, 0) and await rows_of(index, transcript_only) == (0, 0)
    assert await rows_of(index, recent) == (2, 2)

    rerun = await purge(older_than=at(15 * day_ms), audio=files, index=index.store)

    assert rerun.deleted == [] and rerun.failed == {}


async def test_purge_reports_a_failed_session_goes_on_and_a_rerun_finishes(
    tmp_path: Path, index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    first = await record_session(files, index)
    second = await record_session(files, index, start_ms=1000)
    flaky = FailingOnce(index.store)

    report = await purge(older_than=timedelta(0), audio=files, index=flaky, now=at(10**9))

    assert report.failed == {first: "database unavailable"}
    assert [deleted.session_id for deleted in report.deleted] == [second]

    rerun = await purge(older_than=timedelta(0), audio=files, index=flaky, now=at(10**9))

    assert [deleted.session_id for deleted in rerun.deleted] == [first]
    assert await index.store.sessions_older_than(at(10**9)) == []


async def test_purge_refuses_a_negative_period_or_a_naive_cutoff(
    tmp_path: Path, sqlite_index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path)
    with pytest.raises(ValueError):
        await purge(older_than=timedelta(days=-1), audio=files, index=sqlite_index.store)
    with pytest.raises(StorageError, match="timezone-aware"):
        await purge(older_than=datetime(2025, 1, 1), audio=files, index=sqlite_index.store)


@pytest.mark.parametrize("bad", ["../etc", "", "not-a-uuid", "{" + new_id() + "}"])
async def test_deleting_an_id_that_is_not_a_uuid_touches_nothing(
    tmp_path: Path, sqlite_index: IndexBackend, bad: str
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    kept = await record_session(files, sqlite_index)

    with pytest.raises(InvalidIdError):
        await delete_session(bad, audio=files, index=sqlite_index.store, spool_dir=tmp_path / "s")

    assert len(list((files.root / kept).iterdir())) == 2
    assert await rows_of(sqlite_index, kept) == (2, 2)


async def test_deleting_never_follows_a_symlinked_session_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"{new_id()}.wav").write_bytes(WAV)
    files = LocalAudioStorage(tmp_path / "recordings")
    session_id = new_id()
    files.root.mkdir()
    (files.root / session_id).symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePathError):
        await delete_session(session_id, audio=files)

    assert len(list(outside.iterdir())) == 1


async def test_deleting_keeps_files_the_package_did_not_write(tmp_path: Path) -> None:
    files = LocalAudioStorage(tmp_path)
    session_id, segment_id = new_id(), new_id()
    await files.store_segment(session_id, segment_id, "user", WAV)
    (tmp_path / session_id / "notes.txt").write_text("an operator's file")

    assert await files.delete_session(session_id) == 1

    assert [path.name for path in (tmp_path / session_id).iterdir()] == ["notes.txt"]


async def test_a_composite_deletes_through_its_files_backend_or_says_it_cannot(
    tmp_path: Path, sqlite_index: IndexBackend
) -> None:
    files = LocalAudioStorage(tmp_path)
    session_id = await record_session(files, sqlite_index)
    composite = CompositeAudioStorage(files=files, metadata=sqlite_index.store)

    assert await composite.delete_session(session_id) == 2

    class WriteOnly:
        async def store_segment(self, *args: object, **kwargs: object) -> str:
            return "file:///x"

        async def save_metadata(self, *args: object) -> None:
            return None

    with pytest.raises(StorageConfigError, match="cannot delete"):
        await CompositeAudioStorage(files=WriteOnly(), metadata=files).delete_session(session_id)
    with pytest.raises(StorageConfigError, match="cannot count"):
        await CompositeAudioStorage(files=WriteOnly(), metadata=files).count_session(session_id)
    assert await composite.count_session(session_id) == 0


# --- Google Cloud Storage ------------------------------------------------------------------------


def generations(client: storage.Client, bucket: str) -> list[tuple[str, int]]:
    return sorted((blob.name, blob.generation) for blob in client.list_blobs(bucket, versions=True))


async def test_deleting_a_session_deletes_each_object_by_generation_and_only_that_session(
    fault_proxy: Callable[..., FaultProxy],
    fake_gcs: FakeGCS,
    gcs_client: storage.Client,
    bucket_name: str,
) -> None:
    direct = GCSAudioStorage(bucket=bucket_name, prefix="calls/", client=gcs_client)
    doomed, kept = new_id(), new_id()
    kept_segment = new_id()
    for _ in range(2):
        await direct.store_segment(doomed, new_id(), "user", WAV)
    await direct.store_segment(kept, kept_segment, "user", WAV)
    proxy = fault_proxy()
    files = GCSAudioStorage(bucket=bucket_name, prefix="calls/", client=fake_gcs.client(proxy.url))
    assert (await plan_delete_session(doomed, audio=direct)).audio_objects == 2
    assert len(generations(gcs_client, bucket_name)) == 3

    report = await delete_session(doomed, audio=files)

    assert report.audio_objects == 2
    assert [name for name, _ in generations(gcs_client, bucket_name)] == [
        direct.object_name(kept, kept_segment)
    ]
    # Listing every version and deleting each by its generation is what removes noncurrent
    # versions in a versioned bucket (the emulator keeps none, so the requests show it).
    [listing, *deletes] = proxy.seen
    assert listing.method == "GET" and "versions=True" in listing.target
    assert f"prefix=calls%2F{doomed}%2F" in listing.target
    assert [seen.method for seen in deletes] == ["DELETE", "DELETE"]
    assert all("generation=" in seen.target for seen in deletes)
    assert (await delete_session(doomed, audio=files)).audio_objects == 0


async def test_a_bucket_deletion_refused_midway_is_finished_by_a_rerun(
    fault_proxy: Callable[..., FaultProxy],
    fake_gcs: FakeGCS,
    gcs_client: storage.Client,
    bucket_name: str,
) -> None:
    session_id = new_id()
    direct = GCSAudioStorage(bucket=bucket_name, client=gcs_client)
    for _ in range(3):
        await direct.store_segment(session_id, new_id(), "user", WAV)
    # The listing and the first delete get through, then the service refuses.
    proxy = fault_proxy(Fault.FORWARD, Fault.FORWARD, Fault.FORBIDDEN)
    refused = GCSAudioStorage(bucket=bucket_name, client=fake_gcs.client(proxy.url))

    with pytest.raises(StorageError, match="could not delete"):
        await delete_session(session_id, audio=refused)

    assert len(generations(gcs_client, bucket_name)) == 2
    assert [seen.method for seen in proxy.seen] == ["GET", "DELETE", "DELETE"]

    assert (await delete_session(session_id, audio=direct)).audio_objects == 2
    assert generations(gcs_client, bucket_name) == []
