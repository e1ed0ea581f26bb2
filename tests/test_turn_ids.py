"""Pairing transcripts with audio turns through TurnIds."""

import asyncio

from pipecat_audio_capture import TurnIds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_current_ids_follow_the_latest_turn_of_each_speaker():
    turn_ids = TurnIds()
    assert turn_ids.user is None and turn_ids.bot is None
    first = turn_ids.start_turn("user")
    bot = turn_ids.start_turn("bot")
    second = turn_ids.start_turn("user")
    assert turn_ids.user == second != first and turn_ids.bot == bot


def test_a_late_user_transcript_claims_its_own_turn_not_the_next_one():
    clock = Clock()
    turn_ids = TurnIds(clock=clock)
    first = turn_ids.start_turn("user", at=10.0)
    second = turn_ids.start_turn("user", at=13.0)
    # The first transcript becomes final only after the second turn began.
    assert turn_ids.claim("user", started_at=10.02) == first
    assert turn_ids.claim("user", started_at=12.99) == second
    assert turn_ids.claim("user", started_at=10.02) is None


def test_a_user_transcript_far_from_any_audio_turn_claims_nothing():
    turn_ids = TurnIds(tolerance_s=1.0)
    turn_ids.start_turn("user", at=10.0)
    assert turn_ids.claim("user", started_at=12.5) is None


def test_an_assistant_transcript_claims_the_bot_audio_that_played_inside_its_window():
    turn_ids = TurnIds(tolerance_s=0.5)
    greeting = turn_ids.start_turn("bot", at=1.0)
    answer = turn_ids.start_turn("bot", at=6.0)
    assert turn_ids.claim("bot", started_at=5.8, ended_at=9.0) == answer
    assert turn_ids.claim("bot", started_at=0.9, ended_at=3.0) == greeting


def test_discarded_turns_cannot_be_claimed():
    turn_ids = TurnIds()
    unplayed = turn_ids.start_turn("bot", at=5.0)
    turn_ids.discard_turn(unplayed)
    assert turn_ids.claim("bot", started_at=4.9, ended_at=6.0) is None


async def test_wait_claim_returns_when_the_audio_turn_appears_and_a_new_id_after_timeout():
    clock = Clock()
    turn_ids = TurnIds(clock=clock)

    async def audio_side():
        await asyncio.sleep(0.05)
        return turn_ids.start_turn("user", at=100.0)

    waited, started = await asyncio.gather(
        turn_ids.wait_claim("user", started_at=100.0, timeout_s=5.0), audio_side()
    )
    assert waited == started
    orphan = await turn_ids.wait_claim("user", started_at=500.0, timeout_s=0.0)
    assert orphan not in {span.turn_id for span in turn_ids.spans("user")}
