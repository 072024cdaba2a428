from services.bench.chaos import ChaosResult


def clean_run(**changes):
    fields = dict(uploads=100, verdicts=100, verdict_records=100, expected_actions=10)
    fields |= dict(distinct_actions=10, action_records=10)
    return ChaosResult(**(fields | changes))


def test_a_run_passes_only_if_every_service_was_killed_often_enough():
    assert clean_run(kills={"ingest": 3, "matcher": 4, "actions": 3}).passed
    assert not clean_run(kills={"ingest": 3, "matcher": 2, "actions": 3}).passed
    assert not clean_run(kills={"ingest": 3, "matcher": 3}).passed
    assert not clean_run(kills={"ingest": 1, "matcher": 1, "actions": 1}, required_kills=2).passed


def test_the_table_shows_each_service_s_kills_against_the_requirement():
    rows = {
        measure: (value, rule) for measure, value, rule in clean_run(kills={"ingest": 3}).rows()
    }
    assert rows["SIGKILLs of ingest"] == (3, ">= 3")
    assert rows["SIGKILLs of matcher"] == (0, ">= 3")
    assert rows["SIGKILLs of actions"] == (0, ">= 3")


def test_a_lost_verdict_or_a_wrong_action_fails_the_run_whatever_the_kills():
    kills = {"ingest": 3, "matcher": 3, "actions": 3}
    assert not clean_run(kills=kills, missing_verdicts=1).passed
    assert not clean_run(kills=kills, wrong_actions=1).passed
    assert not clean_run(kills=kills, unsigned_actions=1).passed
