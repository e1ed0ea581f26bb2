"""The pipecat-audio-capture command line, on recorded calls in SQLite and PostgreSQL."""

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from pipecat_audio_capture import (
    LocalAudioStorage,
    PendingAudioSegment,
)
from pipecat_audio_capture.cli.format import format_call_log
from pipecat_audio_capture.index_access import DB_ENV, DSN_ENV
from pipecat_audio_capture.migrations import Dialect, load_migrations
from pipecat_audio_capture.storage.index import CallLogEntry
from pipecat_audio_capture.storage.sqlite import SQLiteAudioMetaStorage
from pipecat_audio_capture.wav import read_wav_header

from support.cli import Recorded, RecordedCall, assert_fails, run, run_in_thread
from support.index import T0, IndexBackend, PgSchema, make_segment, new_id
from support.latency import TOTAL_MS, make_latency

SECRET = b"TOP SECRET: not a recording"
UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/test"
MALFORMED_DSN = "host=127.0.0.1 port"
"""What a first ``migrate`` prints: every shipped migration, named alike in both dialects."""

pytestmark = pytest.mark.usefixtures("no_index_in_environment")


# --- the entry point --------------------------------------------------------------------------


def test_python_m_runs_the_console_entry() -> None:
    help_run = subprocess.run(
        [sys.executable, "-m", "pipecat_audio_capture", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    failing = subprocess.run(
        [sys.executable, "-m", "pipecat_audio_capture", "show", "not-a-uuid"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert help_run.returncode == 0
    assert help_run.stdout.startswith("usage: pipecat-audio-capture [-h] [WHERE OPTIONS] COMMAND")
    for word in ("sessions", "show", "export", "migrate", DB_ENV, DSN_ENV, "the DSN wins"):
        assert word in help_run.stdout
    assert failing.returncode == 2
    assert "pipecat-audio-capture: error: session id is not a UUID: 'not-a-uuid'" in (
        failing.stderr
    )
    assert "Traceback" not in failing.stderr


def test_importing_the_cli_needs_no_psycopg() -> None:
    code = "import sys, pipecat_audio_capture.cli; sys.exit('psycopg' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("command", ["sessions", "show", "export", "migrate"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run(capsys, command, "--help")

    assert code == 0
    assert out.startswith(f"usage: pipecat-audio-capture {command} [-h] [--db PATH | --dsn URL]")
    assert "the DSN wins" in out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["sessions", "--limit", "-1"], id="negative-limit"),
        pytest.param(["sessions", "--db", "a", "--dsn", "b"], id="db-and-dsn"),
        pytest.param(["export", new_id()], id="export-without-out"),
    ],
)
def test_usage_errors_are_one_line_and_exit_with_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)

    assert out == ""
    assert_fails(code, err, "--help`)")


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_lists_calls_newest_first(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    code, out, err = run(capsys, "sessions", *recorded.index_args)

    assert (code, err) == (0, "")
    header, newest, older = out.splitlines()
    assert header.split() == [
        "SESSION",
        "STARTED",
        "(UTC)",
        "LENGTH",
        "TURNS",
        "USER",
        "TALK",
        "BOT",
        "TALK",
        "INTERRUPTIONS",
        "SIZE",
    ]
    # 5 WAV headers plus 2 bytes per sample of 1 s + 0.6 s at 16 kHz and 1.0 + 0.5 + 0.8 s at
    # 24 kHz: 161,820 bytes. The call ends with the transcript-only turn at 5.5 s.
    assert newest.split() == [
        recorded.call.session_id,
        "2025-03-01",
        "12:00:00",
        "0:05.50",
        "5",
        "1.6",
        "s",
        "2.3",
        "s",
        "1",
        "161.8",
        "kB",
    ]
    assert older.split()[:3] == [recorded.older.session_id, "2025-03-01", "11:00:00"]
    # Columns line up: every row is as wide as the header row.
    assert len(newest) == len(older) == len(header)


def test_sessions_pages_and_prints_json(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    code, out, _ = run(capsys, "sessions", "--json", *recorded.index_args)
    _, page, _ = run(
        capsys, "sessions", "--json", "--limit", "1", "--offset", "1", *recorded.index_args
    )
    _, empty, _ = run(capsys, "sessions", "--offset", "2", *recorded.index_args)

    assert code == 0
    newest, older = json.loads(out)
    assert newest == {
        "session_id": recorded.call.session_id,
        "started_at": "2025-03-01T12:00:00+00:00",
        "ended_at": "2025-03-01T12:00:05.500000+00:00",
        "turns": 5,
        "segments": 5,
        "user_talk_ms": 1600.0,
        "bot_talk_ms": 2300.0,
        "interruptions": 1,
        "bytes": 161_820,
    }
    assert older["session_id"] == recorded.older.session_id
    assert [summary["session_id"] for summary in json.loads(page)] == [recorded.older.session_id]
    assert empty.startswith("no sessions after the first 2 in ")


# --- show -------------------------------------------------------------------------------------


def test_show_prints_the_call_log_in_spoken_order(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    call = recorded.call
    code, out, err = run(capsys, "show", call.session_id, *recorded.index_args)

    assert (code, err) == (0, "")
    title, blank, header, *rows = out.splitlines()
    assert title == f"session {call.session_id}, started 2025-03-01 12:00:00 UTC"
    assert blank == ""
    assert header.split() == [
        "#",
        "AT",
        "ROLE",
        "DURATION",
        "GAP",
        "INTERRUPTED",
        "TEXT",
        "AUDIO",
    ]
    segment = call.segments
    assert [row.split()[:3] for row in rows] == [
        ["1", "0:00.00", "user"],
        ["2", "0:01.50", "assistant"],
        ["3", "0:02.90", "user"],
        ["4", "0:04.25", "assistant"],
        ["5", "0:05.50", "user"],
    ]
    user1, bot2, user3, bot4, user5 = rows
    assert "1.00 s" in user1
    assert re.search(rf"Hi, where is my order\? +{recorded.wav(segment[0]).as_uri()}$", user1)
    # A turn of two segments: their total duration, the gap after turn 1, both sides' marks.
    assert "1.50 s  0.50 s  audio+transcript (0.40 s unplayed)  It shipped" in bot2
    assert bot2.endswith(recorded.wav(segment[1]).as_uri())
    assert 'Can I change the address, "please"?' in user3
    assert "0.80 s  0.75 s" in bot4
    assert "(no transcript)" in bot4
    assert re.search(r"  -  +Thanks, bye\. +\(no audio\)$", user5)
    # The audio column starts at the same place on every row.
    assert len({row.index("file://") for row in rows[:4]}) == 1


def test_show_json_has_every_call_log_field(
    capsys: pytest.CaptureFixture[str], recorded: Recorded
) -> None:
    call = recorded.call
    code, out, _ = run(capsys, "show", call.session_id, "--json", *recorded.index_args)

    assert code == 0
    turns = json.loads(out)
    assert [turn["turn"] for turn in turns] == [1, 2, 3, 4, 5]
    assert [turn["turn_id"] for turn in turns] == call.turns
    assert [turn["text"] for turn in turns] == call.texts
    assert [turn["response_gap_ms"] for turn in turns] == [None, 500.0, None, 750.0, None]
    assert turns[1] == {
        "turn": 2,
        "session_id": call.session_id,
        "turn_id": call.turns[1],
        "role": "assistant",
        "text": "It shipped yesterday and it",
        "audio_url": recorded.wav(call.segments[1]).as_uri(),
        "segment_id": call.segments[1].segment_id,
        "segment_count": 2,
        "duration_ms": 1500.0,
        "byte_size": 44 * 2 + 2 * 36_000,
        "unplayed_ms": 400.0,
        "audio_interrupted": True,
        "transcript_interrupted": True,
        "occurred_at": "2025-03-01T12:00:01.500000+00:00",
        "started_at": "2025-03-01T12:00:01.500000+00:00",
        "ended_at": "2025-03-01T12:00:03+00:00",
        "playback": None,
        "response_gap_ms": 500.0,
        "latency": None,
    }


async def test_show_reads_both_backends_alike(
    sqlite_index: IndexBackend, postgres_index: IndexBackend, pg_schema: PgSchema, tmp_path: Path
) -> None:
    files = LocalAudioStorage(tmp_path / "recordings")
    call = RecordedCall()
    await call.record(files, sqlite_index.store)
    await call.record(files, postgres_index.store)
    outputs = [
        await run_in_thread(*argv, *index_args)
        for index_args in (["--db", str(sqlite_index.path)], ["--dsn", pg_schema.dsn])
        for argv in (["show", call.session_id], ["show", call.session_id, "--json"])
    ]

    assert outputs[:2] == outputs[2:]
    assert all(code == 0 for code, _, _ in outputs)


async def test_show_prints_each_bot_turns_latency_breakdown_fitted_and_in_json(
    index: IndexBackend, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = recorded.call
    await index.store.save_turn_latency(make_latency(call.session_id, call.turns[3], bot_ms=4250))

    code, out, err = await run_in_thread("show", call.session_id, *recorded.index_args)
    json_code, json_out, _ = await run_in_thread(
        "show", call.session_id, "--json", *recorded.index_args
    )
    monkeypatch.setenv("COLUMNS", "80")
    _, narrow, _ = await run_in_thread("show", call.session_id, *recorded.index_args)

    assert (code, err, json_code) == (0, "", 0)
    title = "why each response took its time (from session_turn_latency):"
    table = out.split(f"\n{title}\n\n")[1].splitlines()
    assert table[0].split() == [
        "#", "TOTAL", "ENDPOINTING", "STT", "TURN", "DETECT", "LLM", "TTS", "SLOWEST"
    ]  # fmt: skip
    # Turn 4 of the call log (the other bot turn has no row): its total, its main stages and
    # the slowest part with who spent it.
    seconds = [f"{ms / 1000:.2f}" for ms in (TOTAL_MS, 200.0, 125.5, 300.0, 812.25, 359.0)]
    slowest = ["llm_inference", "0.81", "s", "(OpenAILLMService#0)"]
    assert table[1].split() == ["4", *" s ".join(seconds).split(), "s", *slowest]
    assert len(table) == 2

    narrow_table = narrow.split(f"\n{title}\n\n")[1].splitlines()
    assert max(len(line) for line in narrow.splitlines()) <= 80
    # Too narrow for the slowest part beside the numbers: it follows on a line of its own.
    assert narrow_table[0].split()[-1] == "TTS"
    assert narrow_table[1].split() == table[1].split()[:13]
    assert narrow_table[2].strip() == "slowest: llm_inference 0.81 s (OpenAILLMService#0)"

    turns = json.loads(json_out)
    assert [turn["latency"] is None for turn in turns] == [True, True, True, False, True]
    latency = turns[3]["latency"]
    assert latency["total_ms"] == round(TOTAL_MS, 1)
    assert (latency["measured_from"], latency["slowest_stage"]) == ("user_silence", "llm_inference")
    assert (latency["llm_inference_ms"], latency["other_ms"]) == (812.2, 40.0)
    assert latency["bot_started_at"] == "2025-03-01T12:00:04.250000+00:00"
    assert latency["stages"][1] == {
        "stage": "transcription",
        "label": "transcription",
        "owner": "DeepgramSTTService#0",
        "owner_kind": "service",
        "offset_ms": 200.0,
        "duration_ms": 125.5,
    }
    assert "turn_id" not in latency


def test_format_call_log_leaves_out_gaps_it_is_not_given() -> None:
    session_id = new_id()
    meta = make_segment(session_id, speaker="bot", duration_ms=2000)
    long_text = "word " * 30
    entry = CallLogEntry(
        session_id=session_id,
        turn_id=meta.turn_id,
        role="assistant",
        text=long_text.strip(),
        audio_url=meta.audio_url,
        segment_id=meta.segment_id,
        segment_count=1,
        duration_ms=2000.0,
        byte_size=meta.byte_size,
        unplayed_ms=None,
        audio_interrupted=False,
        transcript_interrupted=False,
        occurred_at=T0,
        started_at=T0,
        ended_at=meta.ended_at,
    )
    short = replace(entry, text="ok", occurred_at=T0 + timedelta(minutes=61, seconds=2.5))

    header, first, wrapped, *rest = format_call_log([entry, short]).splitlines()

    assert "GAP" not in header
    # The 150-character text wraps at 60 under the TEXT column; the audio column stays put.
    assert first.index(meta.audio_url) == header.index("AUDIO")
    assert wrapped.strip().startswith("word word")
    assert wrapped.index("word") == header.index("TEXT")
    assert rest[-1].split()[:2] == ["2", "1:01:02.50"]
    assert format_call_log([]).split() == [
        "#",
        "AT",
        "ROLE",
        "DURATION",
        "INTERRUPTED",
        "TEXT",
        "AUDIO",
    ]


# --- export -----------------------------------------------------------------------------------


def stereo_of(path: Path) -> tuple[int, np.ndarray]:
    """A call.wav's sample rate and its samples, one column per channel (user, bot)."""
    with path.open("rb") as file:
        wav = read_wav_header(file)
        samples = np.frombuffer(file.read(), dtype="<i2")
    assert wav.num_channels == 2
    return wav.sample_rate, samples.reshape(-1, 2)


def level_at(stereo: tuple[int, np.ndarray], channel: int, ms: float) -> int:
    rate, samples = stereo
    return int(samples[round(ms * rate / 1000), channel])


def test_export_copies_every_part_of_every_turn_builds_call_wav_and_writes_the_transcripts(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path
) -> None:
    call, out_dir = recorded.call, tmp_path / "export" / "call"

    code, out, err = run(
        capsys, "export", call.session_id, "--out", str(out_dir), *recorded.export_args
    )

    assert (code, err) == (0, "")
    wavs = ["001-user.wav", "002-assistant-part1.wav", "002-assistant-part2.wav"]
    wavs += ["003-user.wav", "004-assistant.wav"]
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(
        [*wavs, "call.wav", "transcript.csv", "transcript.json"]
    )
    for name, segment in zip(wavs, call.segments, strict=True):
        assert (out_dir / name).read_bytes() == recorded.wav(segment).read_bytes()
    assert out == (
        f"exported 8 files to {out_dir}: {', '.join(wavs)}, call.wav, transcript.json, "
        "transcript.csv\n"
    )
    # The whole call at the highest rate of its segments: each segment (its own sample level)
    # on its speaker's channel where its row says it started, silence where nobody spoke.
    stereo = stereo_of(out_dir / "call.wav")
    assert stereo[0] == 24_000
    assert len(stereo[1]) == 24_000 * 5050 // 1000
    user, bot = 0, 1
    assert [level_at(stereo, user, ms) for ms in (500, 1200, 3200, 4600)] == [1000, 0, 4000, 0]
    assert [level_at(stereo, bot, ms) for ms in (500, 2000, 2750, 3600, 4600)] == [
        0, 2000, 3000, 0, 5000
    ]  # fmt: skip
    # The barge-in: user and bot both heard from 2.9 s to 3 s.
    assert (level_at(stereo, user, 2950), level_at(stereo, bot, 2950)) == (4000, 3000)

    turns = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    assert [turn["audio_files"] for turn in turns] == [
        wavs[:1], wavs[1:3], wavs[3:4], wavs[4:], []
    ]  # fmt: skip
    assert [turn["text"] for turn in turns] == call.texts
    assert turns[0]["occurred_at"] == "2025-03-01T12:00:00+00:00"
    assert turns[3]["response_gap_ms"] == 750.0

    with (out_dir / "transcript.csv").open(encoding="utf-8", newline="") as csv_file:
        rows = list(csv.DictReader(csv_file))
    assert list(rows[0]) == list(turns[0])
    assert [row["text"] for row in rows] == [text or "" for text in call.texts]
    assert rows[1]["audio_interrupted"] == "true"
    assert rows[1]["unplayed_ms"] == "400.0"
    assert rows[4]["audio_url"] == rows[4]["duration_ms"] == rows[4]["audio_files"] == ""
    assert rows[0]["audio_files"] == "001-user.wav"
    assert rows[1]["audio_files"] == "002-assistant-part1.wav 002-assistant-part2.wav"


def test_export_leaves_out_a_missing_wav_reports_it_and_exits_2(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path
) -> None:
    call = recorded.call
    missing = [recorded.wav(call.segments[2]), recorded.wav(call.segments[3])]
    for path in missing:
        path.unlink()
    out_dir = tmp_path / "export"

    code, out, err = run(
        capsys, "export", call.session_id, "--out", str(out_dir), *recorded.export_args
    )

    assert code == 2
    assert f"error: turn 2 part 2: not exported: no recording at {missing[0]}\n" in err
    assert f"error: turn 3: not exported: no recording at {missing[1]}\n" in err
    # Silent in call.wav, and said so, turn by turn.
    for label, segment in (("turn 2 part 2", call.segments[2]), ("turn 3", call.segments[3])):
        assert (
            f"warning: call.wav: {label} ({segment.speaker} segment {segment.segment_id}): "
            "unreadable: silent from 0.0 ms: its audio was refused\n"
        ) in err
    assert "error: call.wav: 2 segments not played as indexed, 2 of them silent\n" in err
    assert err.endswith("error: the audio of 2 turns was refused; the rest was exported\n")
    assert "Traceback" not in err
    assert out == (
        f"exported 6 files to {out_dir}: 001-user.wav, 002-assistant-part1.wav, "
        "004-assistant.wav, call.wav, transcript.json, transcript.csv\n"
    )
    assert not (out_dir / "003-user.wav").exists()
    stereo = stereo_of(out_dir / "call.wav")
    assert (level_at(stereo, 0, 3200), level_at(stereo, 1, 2750)) == (0, 0)
    assert (level_at(stereo, 0, 500), level_at(stereo, 1, 2000)) == (1000, 2000)
    turns = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    assert turns[1]["audio_files"] == ["002-assistant-part1.wav"]
    assert turns[2]["audio_files"] == []


async def export_with_rows_set(
    index: IndexBackend,
    recorded: Recorded,
    out_dir: Path,
    assignment: str,
    segment: PendingAudioSegment | None = None,
) -> tuple[int, str, str]:
    """Set ``assignment`` on one segment's row (every row of the call when None), then export
    the call into ``out_dir``."""
    where = (
        f"segment_id = '{segment.segment_id}'"
        if segment
        else f"session_id = '{recorded.call.session_id}'"
    )
    await index.execute(f"UPDATE session_audio_segments SET {assignment} WHERE {where}")
    return await run_in_thread(
        "export", recorded.call.session_id, "--out", str(out_dir), *recorded.export_args
    )


async def test_export_warns_of_a_segment_shorter_than_its_row_in_call_wav_and_exits_0(
    index: IndexBackend, recorded: Recorded, tmp_path: Path
) -> None:
    short = recorded.call.segments[4]
    out_dir = tmp_path / "export"

    code, out, err = await export_with_rows_set(
        index, recorded, out_dir, "duration_ms = 1000", short
    )

    assert code == 0
    assert err == (
        f"pipecat-audio-capture: warning: call.wav: turn 4 (bot segment {short.segment_id}): "
        "short: its audio ends 200.0 ms early\n"
        "pipecat-audio-capture: warning: call.wav: 1 segment not played as indexed, 0 of them "
        "silent\n"
    )
    assert "call.wav" in out
    stereo = stereo_of(out_dir / "call.wav")
    assert len(stereo[1]) == 24_000 * 5250 // 1000
    assert (level_at(stereo, 1, 4900), level_at(stereo, 1, 5150)) == (5000, 0)


async def test_export_reads_nothing_outside_the_recordings_and_counts_each_refusal(
    index: IndexBackend, recorded: Recorded, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    linked = tmp_path / "linked.txt"
    linked.write_bytes(SECRET)
    call = recorded.call
    recorded.wav(call.segments[0]).unlink()
    recorded.wav(call.segments[0]).symlink_to(secret)
    recorded.wav(call.segments[4]).unlink()
    os.link(linked, recorded.wav(call.segments[4]))
    for url, at_ms in [
        ("file:///etc/passwd", 6000),
        (f"file://{recorded.files.root}/../secret.txt", 7000),
    ]:
        row = replace(make_segment(call.session_id, start_ms=at_ms), audio_url=url)
        await index.store.save_metadata(call.session_id, row)
    out_dir = tmp_path / "export"

    code, _, err = await run_in_thread(
        "export", call.session_id, "--out", str(out_dir), *recorded.export_args
    )

    assert code == 2
    refused = re.findall(r"error: turn (\d+): not exported: (.*)", err)
    assert [turn for turn, _ in refused] == ["1", "4", "6", "7"]
    assert "is a symlink" in refused[0][1]
    assert "has 2 links" in refused[1][1]
    assert refused[2][1].startswith("/etc/passwd is not the segment's own recording")
    assert "secret.txt is not the segment's own recording" in refused[3][1]
    assert "the audio of 4 turns was refused" in err
    assert "error: call.wav: 4 segments not played as indexed, 4 of them silent" in err
    assert "Traceback" not in err
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "002-assistant-part1.wav", "002-assistant-part2.wav", "003-user.wav", "call.wav",
        "transcript.csv", "transcript.json",
    ]  # fmt: skip
    for path in out_dir.iterdir():
        assert SECRET not in path.read_bytes()
        assert b"root:x:0:0" not in path.read_bytes()
    turns = json.loads((out_dir / "transcript.json").read_text(encoding="utf-8"))
    assert [bool(turn["audio_files"]) for turn in turns] == [False, True, True, False, False] + [
        False
    ] * 2


async def test_export_reads_a_segment_under_the_recordings_by_its_ids_not_where_its_row_says(
    index: IndexBackend, recorded: Recorded, tmp_path: Path
) -> None:
    call = recorded.call
    elsewhere = LocalAudioStorage(tmp_path / "elsewhere")
    moved, missing = call.segments[0], call.segments[3]
    for segment in (moved, missing):
        # The same names in another folder: what a row points at once the files have moved.
        await elsewhere.store_segment(segment.session_id, segment.segment_id, "user", SECRET)
        url = elsewhere.path_for(segment.session_id, segment.segment_id).as_uri()
        await index.execute(
            f"UPDATE session_audio_segments SET audio_url = '{url}' "
            f"WHERE segment_id = '{segment.segment_id}'"
        )
    recorded.wav(missing).unlink()
    out_dir = tmp_path / "export"

    code, _, err = await run_in_thread(
        "export", call.session_id, "--out", str(out_dir), *recorded.export_args
    )

    assert code == 2
    assert f"error: turn 3: not exported: no recording at {recorded.wav(missing)}\n" in err
    assert (out_dir / "001-user.wav").read_bytes() == recorded.wav(moved).read_bytes()
    assert not (out_dir / "003-user.wav").exists()
    for path in out_dir.iterdir():
        assert SECRET not in path.read_bytes()


async def test_export_exits_2_when_a_segment_it_copied_is_silent_in_call_wav(
    index: IndexBackend, recorded: Recorded, tmp_path: Path
) -> None:
    odd = recorded.call.segments[4]
    out_dir = tmp_path / "export"

    # Its row no longer agrees with its WAV's header (24 kHz): copied as it is, silent in the
    # call.
    code, _, err = await export_with_rows_set(index, recorded, out_dir, "sample_rate = 8000", odd)

    assert code == 2
    assert "not exported" not in err
    assert (
        f"warning: call.wav: turn 4 (bot segment {odd.segment_id}): unreadable: silent from "
        "0.0 ms: its file is 24000 Hz x 1, its row says 8000 Hz x 1\n"
    ) in err
    assert err.endswith("error: call.wav: 1 segment not played as indexed, 1 of them silent\n")
    assert (out_dir / "004-assistant.wav").read_bytes() == recorded.wav(odd).read_bytes()
    assert level_at(stereo_of(out_dir / "call.wav"), 1, 4600) == 0


async def test_export_reports_a_call_wav_it_cannot_build_keeps_the_rest_and_exits_2(
    index: IndexBackend, recorded: Recorded, tmp_path: Path
) -> None:
    call = recorded.call
    out_dir = tmp_path / "export"

    # Rows no recording can have (the index's constraints allow any positive rate): the turns'
    # files still copy, but no segment can be placed on the call's timeline.
    code, out, err = await export_with_rows_set(index, recorded, out_dir, "sample_rate = 4000")

    assert code == 2
    assert err == (
        "pipecat-audio-capture: error: call.wav not written: no placeable audio segment among 5 "
        "rows\n"
    )
    assert "call.wav" not in out
    assert not (out_dir / "call.wav").exists()
    assert len(list(out_dir.glob("0*.wav"))) == len(call.segments)


@pytest.mark.parametrize(
    "planted", ["transcript.json", "transcript.csv", "001-user.wav", "call.wav"]
)
def test_export_never_writes_through_a_symlink_planted_in_the_folder(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path, planted: str
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("setting = 1\n")
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    (out_dir / planted).symlink_to(victim)

    code, _, err = run(
        capsys, "export", recorded.call.session_id, "--out", str(out_dir), *recorded.export_args
    )

    assert_fails(code, err, f"{out_dir / planted} already exists: export writes new files only")
    assert victim.read_text() == "setting = 1\n"
    assert [path.name for path in out_dir.iterdir()] == [planted]


@pytest.mark.parametrize("index", ["postgres"], indirect=True)
def test_export_from_postgres_needs_the_recordings_folder(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "export", recorded.call.session_id, "--out", str(tmp_path / "export"),
        *recorded.index_args,
    )  # fmt: skip

    assert_fails(code, err, "say which folder holds the recordings: --recordings DIR")
    assert not (tmp_path / "export").exists()


def test_export_reports_an_unwritable_folder(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")

    code, _, err = run(
        capsys,
        "export",
        recorded.call.session_id,
        "--out",
        str(not_a_folder),
        *recorded.export_args,
    )

    assert_fails(code, err, f"cannot write the export to {not_a_folder}")


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_creates_a_sqlite_index_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "new" / "index.sqlite3"

    first = run(capsys, "migrate", "--db", str(path))
    again = run(capsys, "migrate", "--db", str(path))
    listed = run(capsys, "sessions", "--db", str(path))

    assert first == (0, _applied("sqlite"), "")
    assert again == (0, f"{path} is up to date\n", "")
    assert listed == (0, f"no sessions in {path}\n", "")


def test_migrate_creates_the_postgres_tables_once(
    capsys: pytest.CaptureFixture[str], pg_schema: PgSchema
) -> None:
    unmigrated = run(capsys, "sessions", "--dsn", pg_schema.dsn)
    first = run(capsys, "migrate", "--dsn", pg_schema.dsn)
    again = run(capsys, "migrate", "--dsn", pg_schema.dsn)
    listed = run(capsys, "sessions", "--json", "--dsn", pg_schema.dsn)

    # Reading does not create the tables: it says what to run.
    assert_fails(unmigrated[0], unmigrated[2], "run `pipecat-audio-capture migrate --dsn ...`")
    assert first == (0, _applied("postgres"), "")
    assert again == (0, "the PostgreSQL index is up to date\n", "")
    assert listed == (0, "[]\n", "")


def _applied(dialect: Dialect) -> str:
    """What ``migrate`` prints when it applies every shipped migration."""
    return "".join(f"applied {m.version:04d}_{m.name}\n" for m in load_migrations(dialect))


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "export"])
def test_a_session_id_must_be_a_uuid(
    capsys: pytest.CaptureFixture[str], command: str, tmp_path: Path
) -> None:
    extra = ["--out", str(tmp_path)] if command == "export" else []

    # Checked before the index is opened: this one does not exist.
    code, _, err = run(capsys, command, "../etc", *extra, "--db", str(tmp_path / "x"))

    assert_fails(code, err, "session id is not a UUID: '../etc'")


@pytest.mark.parametrize("command", ["show", "export"])
def test_an_unknown_session_is_reported(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, command: str, tmp_path: Path
) -> None:
    unknown = new_id()
    extra = ["--out", str(tmp_path / "export")] if command == "export" else []

    code, _, err = run(capsys, command, unknown, *extra, *recorded.index_args)

    assert_fails(code, err, f"session {unknown} not found in ")
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "argv",
    [["sessions"], ["show", new_id()], ["export", new_id(), "--out", "unused"]],
    ids=["sessions", "show", "export"],
)
def test_a_missing_sqlite_file_is_not_created(
    capsys: pytest.CaptureFixture[str], argv: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "nowhere" / "index.sqlite3"

    code, _, err = run(capsys, *argv, "--db", str(path))

    assert_fails(code, err, f"no audio index at {path}")
    assert not path.parent.exists()


@pytest.mark.parametrize(
    "argv", [["sessions"], ["show", new_id()], ["migrate"]], ids=["sessions", "show", "migrate"]
)
@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        pytest.param(UNREACHABLE_DSN, "cannot connect to PostgreSQL", id="unreachable"),
        pytest.param(MALFORMED_DSN, 'malformed PostgreSQL DSN: missing "="', id="malformed"),
    ],
)
def test_a_bad_postgres_dsn_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], dsn: str, message: str
) -> None:
    code, _, err = run(capsys, *argv, "--dsn", dsn)

    assert_fails(code, err, message)


@pytest.mark.parametrize("command", ["sessions", "migrate"])
def test_a_dsn_without_the_postgres_extra_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # None in sys.modules makes the import fail as if psycopg were not installed.
    monkeypatch.setitem(sys.modules, "pipecat_audio_capture.storage.postgres", None)

    code, _, err = run(capsys, command, "--dsn", UNREACHABLE_DSN)

    assert_fails(code, err, "--dsn needs the postgres extra: pip install ")


def test_a_file_that_is_not_sqlite_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"not a database, but long enough to look like a header" * 4)

    code, _, err = run(capsys, "sessions", "--db", str(path))

    assert_fails(code, err, f"cannot open SQLite database {path}")


# --- choosing the index -----------------------------------------------------------------------


def test_the_environment_chooses_the_index_and_flags_beat_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "index.sqlite3"
    assert run(capsys, "migrate", "--db", str(path))[0] == 0

    monkeypatch.setenv(DB_ENV, str(path))
    from_db_env = run(capsys, "sessions")
    monkeypatch.setenv(DSN_ENV, UNREACHABLE_DSN)
    dsn_env_wins = run(capsys, "sessions")
    db_flag_wins = run(capsys, "sessions", "--db", str(path))
    monkeypatch.delenv(DSN_ENV)
    dsn_flag_wins = run(capsys, "sessions", "--dsn", MALFORMED_DSN)

    assert from_db_env == (0, f"no sessions in {path}\n", "")
    assert_fails(dsn_env_wins[0], dsn_env_wins[2], "cannot connect to PostgreSQL")
    assert db_flag_wins == from_db_env
    assert_fails(dsn_flag_wins[0], dsn_flag_wins[2], "malformed PostgreSQL DSN")


def test_the_default_index_is_where_the_demo_writes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    missing = run(capsys, "sessions")
    created = run(capsys, "migrate")

    assert_fails(missing[0], missing[2], "no audio index at recordings/index.sqlite3")
    assert created[0] == 0
    assert (tmp_path / "recordings" / "index.sqlite3").is_file()


async def test_the_cli_reads_an_index_a_bot_is_writing(tmp_path: Path) -> None:
    # The SQLite index is in WAL mode: the CLI reads while the writer's connection is open.
    path = tmp_path / "index.sqlite3"
    writer = SQLiteAudioMetaStorage(path)
    call = RecordedCall()
    await call.record(LocalAudioStorage(tmp_path / "recordings"), writer)

    code, out, _ = await run_in_thread("sessions", "--json", "--db", str(path))
    await writer.close()

    assert code == 0
    assert [summary["session_id"] for summary in json.loads(out)] == [call.session_id]


# --- fitting the terminal, plurals, rounded JSON ----------------------------------------------


def column_pieces(lines: list[str], start: int, end: int | None = None) -> list[str]:
    return [line[start:end].strip() for line in lines if line[start:end].strip()]


@pytest.mark.parametrize("columns", [80, 120])
def test_show_fits_the_width_columns_asks_for_and_loses_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    recorded: Recorded,
    columns: int,
) -> None:
    call = recorded.call
    monkeypatch.setenv("COLUMNS", str(columns))

    code, out, _ = run(capsys, "show", call.session_id, *recorded.index_args)

    assert code == 0
    _, _, header, *lines = out.splitlines()
    assert max(len(line) for line in [header, *lines]) <= columns
    # Row 2 (the bot turn of two segments) wraps; its audio URL follows on lines of its own.
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("2 "))
    audio = next(i for i in range(first, len(lines)) if lines[i].lstrip().startswith("audio: "))
    last = next(i for i, line in enumerate(lines) if line.lstrip().startswith("3 "))
    row, url_lines = lines[first:audio], lines[audio:last]
    assert "AUDIO" not in header
    text = header.index("TEXT")
    assert " ".join(column_pieces(row, text)) == call.texts[1]
    interrupted = " ".join(column_pieces(row, header.index("INTERRUPTED"), text))
    assert interrupted.replace("+ ", "+") == "audio+transcript (0.40 s unplayed)"
    url = recorded.wav(call.segments[1]).as_uri()
    assert "".join(line.strip() for line in url_lines) == f"audio: {url}"


def test_show_keeps_rows_whole_when_the_width_allows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, recorded: Recorded
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    wide = run(capsys, "show", recorded.call.session_id, *recorded.index_args)
    monkeypatch.delenv("COLUMNS")
    # Not a terminal and no $COLUMNS (a pipe, a file): not cut to a guessed width either.
    piped = run(capsys, "show", recorded.call.session_id, *recorded.index_args)

    assert wide == piped
    assert len(wide[1].splitlines()) == 3 + 5


def test_counts_are_in_words_that_agree(
    capsys: pytest.CaptureFixture[str], recorded: Recorded, tmp_path: Path
) -> None:
    from pipecat_audio_capture.cli.format import plural

    assert [plural(1, "segment"), plural(2, "segment"), plural(0, "segment")] == [
        "1 segment",
        "2 segments",
        "0 segments",
    ]
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


async def test_json_numbers_are_rounded(sqlite_index: IndexBackend) -> None:
    session_id = new_id()
    meta = make_segment(session_id, speaker="bot", duration_ms=1234.56789, unplayed_ms=0.1 + 0.2)
    await sqlite_index.store.save_metadata(session_id, meta)
    db = ["--db", str(sqlite_index.path)]

    _, shown, _ = await run_in_thread("show", session_id, "--json", *db)
    _, listed, _ = await run_in_thread("sessions", "--json", *db)

    (turn,) = json.loads(shown)
    (summary,) = json.loads(listed)
    assert (turn["duration_ms"], turn["unplayed_ms"]) == (1234.6, 0.3)
    assert summary["bot_talk_ms"] == 1234.6
    assert '"unplayed_ms": 0.3,' in shown
