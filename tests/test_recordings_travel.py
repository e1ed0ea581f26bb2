"""Recordings that travel: a demo call's folder copied elsewhere, the original deleted.

The index still holds the ``file://`` URLs of the original folder. ``serve``, ``export``,
``delete``, ``purge`` and ``replay`` find each WAV under the copy by its ids (the default
``--recordings``: the SQLite index's folder), and still read nothing outside it. The demo
call runs once for the module at twice real time, as the browser tests run it (its barge-in cut
is then approximate, which nothing here looks at).
"""

import asyncio
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipecat_audio_capture import PendingAudioSegment, Spool
from pipecat_audio_capture.cli import main
from pipecat_audio_capture.demo.recorded_call import INDEX_FILE, record_demo_call
from pipecat_audio_capture.ids import new_id

from support.browser import running_review

SPEED = 2.0
SECRET = b"TOP SECRET: not a recording"
HOSTILE_SESSION_ID = "../" * 11 + "tmp"
"""36 characters, as the SQLite schema demands of a session id, climbing to ``/tmp``."""

# Loopback requests must not go through an http_proxy of the environment.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Segment:
    """A recorded segment as the index holds it."""

    session_id: str
    segment_id: str
    audio_url: str


@dataclass(frozen=True)
class MovedCall:
    """A recorded call whose folder was copied to ``folder / "recordings"`` and then deleted.

    Parameters:
        folder: The folder holding the copy, ``recordings/``.
        original: Where the call was recorded (gone).
        session_id: The call.
        segments: Its segments, in recorded order.
    """

    folder: Path
    original: Path
    session_id: str
    segments: list[Segment]

    @property
    def recordings(self) -> Path:
        return self.folder / "recordings"

    @property
    def index_path(self) -> Path:
        return self.recordings / INDEX_FILE

    def wav(self, segment: Segment) -> Path:
        return self.recordings / segment.session_id / f"{segment.segment_id}.wav"

    def copy_to(self, folder: Path) -> "MovedCall":
        """Copy the copy once more, for a test that changes it."""
        shutil.copytree(self.recordings, folder / "recordings")
        return MovedCall(folder, self.original, self.session_id, self.segments)


pytestmark = pytest.mark.usefixtures("no_index_in_environment")


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> MovedCall:
    original = tmp_path_factory.mktemp("original") / "recordings"
    demo = asyncio.run(record_demo_call(original, speed=SPEED, say=lambda _: None))
    assert demo.stats.stored == demo.stats.recorded > 0
    folder = tmp_path_factory.mktemp("moved")
    shutil.copytree(original, folder / "recordings")
    shutil.rmtree(original)
    with closing(sqlite3.connect(folder / "recordings" / INDEX_FILE)) as conn:
        rows = conn.execute(
            "SELECT session_id, segment_id, audio_url FROM session_audio_segments "
            "ORDER BY started_at"
        ).fetchall()
    segments = [Segment(*row) for row in rows]
    # The index names the folder that is gone: what the copy has to cope with.
    assert all(segment.audio_url.startswith(original.as_uri() + "/") for segment in segments)
    return MovedCall(folder, original, demo.session_id, segments)


def get(url: str) -> tuple[int, bytes]:
    try:
        with LOOPBACK.open(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_plays_every_segment_from_the_copy(moved: MovedCall) -> None:
    # In the copy's parent with no option, as a user starts it: the default index
    # ./recordings/index.sqlite3 and the recordings beside it.
    with running_review(moved.folder) as server:
        answers = [get(f"{server.url}audio/{segment.segment_id}") for segment in moved.segments]
        ranged = urllib.request.Request(
            f"{server.url}audio/{moved.segments[0].segment_id}", headers={"Range": "bytes=0-43"}
        )
        with LOOPBACK.open(ranged, timeout=10) as response:
            partial = (response.status, response.read())

    assert answers == [(200, moved.wav(segment).read_bytes()) for segment in moved.segments]
    assert partial == (206, moved.wav(moved.segments[0]).read_bytes()[:44])
    assert f"audio served from {moved.recordings.resolve()}\n" in server.output


def test_export_copies_every_turn_from_the_copy(
    moved: MovedCall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "export"

    code = main(["export", moved.session_id, "--out", str(out_dir), "--db", str(moved.index_path)])
    out, err = capsys.readouterr()

    assert code == 0, err
    assert "not exported" not in err
    exported = sorted(path for path in out_dir.glob("0*.wav"))
    # Every turn's segment, byte for byte; the demo's turns are one segment each.
    assert [path.read_bytes() for path in exported] == [
        moved.wav(segment).read_bytes() for segment in moved.segments
    ]
    # Beside them the whole call, built from the copy.
    assert (out_dir / "call.wav").stat().st_size > 0
    assert out.startswith(f"exported {len(exported) + 3} files to {out_dir}: ")


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["delete", "SESSION_ID"], "deleted session SESSION_ID: {segments} audio files, "),
        (["purge", "--older-than", "1s"], "purged 1 session last active before "),
    ],
    ids=["delete", "purge"],
)
def test_delete_and_purge_remove_the_call_from_the_copy(
    moved: MovedCall,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    said: str,
) -> None:
    call = moved.copy_to(tmp_path)
    argv = [call.session_id if arg == "SESSION_ID" else arg for arg in command]
    if command[0] == "purge":
        time.sleep(1.1)  # the shortest retention period the CLI takes is 1 s

    code = main([*argv, "--db", str(call.index_path)])
    out, err = capsys.readouterr()

    assert (code, err) == (0, "")
    assert out.startswith(
        said.replace("SESSION_ID", call.session_id).format(segments=len(call.segments))
    )
    assert not (call.recordings / call.session_id).exists()
    with closing(sqlite3.connect(call.index_path)) as conn:
        assert conn.execute("SELECT count(*) FROM session_audio_segments").fetchone() == (0,)


def test_replay_stores_spooled_audio_in_the_copy(
    moved: MovedCall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = moved.copy_to(tmp_path)
    spool_dir = tmp_path / "spool"
    late = PendingAudioSegment(
        segment_id=new_id(),
        session_id=call.session_id,
        turn_id=new_id(),
        speaker="user",
        pcm=[bytes(3200)],
        sample_rate=16_000,
        num_channels=1,
        started_at=datetime.now(UTC),
    )
    asyncio.run(Spool(spool_dir).put_segment(late, reason="the disk was full"))

    code = main(["replay", "--spool", str(spool_dir), "--db", str(call.index_path)])
    out, err = capsys.readouterr()

    assert (code, err) == (0, ""), out
    stored = call.recordings / call.session_id / f"{late.segment_id}.wav"
    assert stored.stat().st_size == 44 + 3200
    with closing(sqlite3.connect(call.index_path)) as conn:
        (url,) = conn.execute(
            "SELECT audio_url FROM session_audio_segments WHERE segment_id = ?",
            (late.segment_id,),
        ).fetchone()
    assert url == stored.resolve().as_uri()


def test_serve_refuses_a_row_whose_session_id_climbs_out_of_the_copy(
    moved: MovedCall, tmp_path: Path
) -> None:
    call = moved.copy_to(tmp_path)
    segment = call.segments[0]
    # The file that session id reaches when it is joined to the recordings folder.
    planted = Path("/tmp") / f"{segment.segment_id}.wav"
    planted.write_bytes(SECRET)
    try:
        with closing(sqlite3.connect(call.index_path)) as conn, conn:
            conn.execute(
                "UPDATE session_audio_segments SET session_id = ?, audio_url = ? "
                "WHERE segment_id = ?",
                (HOSTILE_SESSION_ID, planted.as_uri(), segment.segment_id),
            )
        with running_review(call.folder) as server:
            refused = get(f"{server.url}audio/{segment.segment_id}")
            played = get(f"{server.url}audio/{call.segments[1].segment_id}")
    finally:
        planted.unlink()

    assert refused[0] == 404
    assert SECRET not in refused[1]
    assert played == (200, call.wav(call.segments[1]).read_bytes())
    assert any("an id is not a UUID" in line for line in server.output)


def test_export_refuses_a_row_whose_segment_id_climbs_out_of_the_copy(
    moved: MovedCall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = moved.copy_to(tmp_path)
    segment = call.segments[0]
    with closing(sqlite3.connect(call.index_path)) as conn, conn:
        conn.execute(
            "UPDATE session_audio_segments SET segment_id = ?, audio_url = ? WHERE segment_id = ?",
            (HOSTILE_SESSION_ID, "file:///tmp.wav", segment.segment_id),
        )
    out_dir = tmp_path / "export"

    code = main(["export", call.session_id, "--out", str(out_dir), "--db", str(call.index_path)])
    _, err = capsys.readouterr()

    assert code == 2
    assert "error: turn 1: not exported: " in err
    assert "an id is not a UUID; its audio is not opened" in err
    assert err.count("not exported") == 1
    assert len(list(out_dir.glob("0*.wav"))) == len(call.segments) - 1


def test_export_finds_nothing_of_a_call_whose_folder_is_gone(
    moved: MovedCall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call = moved.copy_to(tmp_path)
    shutil.rmtree(call.recordings / call.session_id)
    out_dir = tmp_path / "export"

    code = main(["export", call.session_id, "--out", str(out_dir), "--db", str(call.index_path)])
    _, err = capsys.readouterr()

    assert code == 2
    assert err.count("not exported: no recording at ") == len(call.segments)
    assert f"no recording at {call.recordings.resolve()}/{call.session_id}/" in err
    assert str(moved.original) not in err
    assert sorted(path.name for path in out_dir.iterdir()) == ["transcript.csv", "transcript.json"]
