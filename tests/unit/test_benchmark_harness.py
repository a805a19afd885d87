"""The benchmark harness's own logic: selection, parameters, statistics, URLs."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import parse_selection, rotated
from benchmarks.database import check_loopback, masked, with_database
from benchmarks.results import Results, Sample, percentile
from benchmarks.settings import parse_params


def _sample(system: str, round_no: int, value: float) -> Sample:
    return Sample(
        "throughput", "1 worker process", system, round_no, value, "jobs/s", True
    )


def test_selection_defaults_to_everything_but_rss():
    chosen = parse_selection([])

    assert ("conveyor", "throughput") in chosen
    assert ("raw", "claim") in chosen
    assert ("conveyor", "rss") not in chosen


def test_selection_accepts_systems_measurements_and_pairs():
    chosen = parse_selection(["raw", "conveyor/latency,http"])

    assert ("raw", "enqueue") in chosen
    assert ("conveyor", "latency") in chosen
    assert ("pgqueuer", "http") in chosen
    assert ("conveyor", "enqueue") not in chosen


def test_selection_keeps_rss_without_throughput():
    assert parse_selection(["rss"]) == {
        ("conveyor", "rss"),
        ("pgqueuer", "rss"),
        ("procrastinate", "rss"),
        ("raw", "rss"),
    }


def test_selection_rejects_unknown_names():
    with pytest.raises(ValueError, match="names no system"):
        parse_selection(["celery"])
    with pytest.raises(ValueError, match="unknown measurement"):
        parse_selection(["raw/speed"])


def test_rotation_moves_one_system_per_round():
    names = ["a", "b", "c"]

    assert rotated(names, 1) == ["a", "b", "c"]
    assert rotated(names, 2) == ["b", "c", "a"]
    assert rotated(names, 4) == ["a", "b", "c"]


def test_params_parse_json_values_and_strings():
    params = parse_params(["pgqueuer.batch_size=100", "conveyor.log_level=WARNING"])

    assert params == {
        "pgqueuer": {"batch_size": 100},
        "conveyor": {"log_level": "WARNING"},
    }


def test_params_reject_missing_system():
    with pytest.raises(ValueError, match=r"SYSTEM\.NAME=VALUE"):
        parse_params(["batch_size=100"])


def test_percentile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]

    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 90) == pytest.approx(4.6)


def test_ratios_pair_values_of_the_same_round():
    results = Results(
        samples=[
            _sample("conveyor", 1, 300.0),
            _sample("pgqueuer", 1, 100.0),
            _sample("conveyor", 2, 200.0),
            _sample("pgqueuer", 2, 200.0),
            _sample("conveyor", 3, 500.0),
        ]
    )

    ratios = results.ratios("throughput", "1 worker process", "conveyor", "pgqueuer")
    summary = results.ratio_summary(
        "throughput", "1 worker process", "conveyor", "pgqueuer"
    )

    assert ratios == [3.0, 1.0]
    assert summary is not None
    assert summary.median == 2.0
    assert summary.count == 2


def test_database_url_must_be_local():
    check_loopback("postgresql://postgres@127.0.0.1:5432/postgres")
    check_loopback("postgresql://postgres@localhost/postgres")
    check_loopback("postgresql://postgres@[::1]:5432/postgres")

    with pytest.raises(ValueError, match="not a loopback address"):
        check_loopback("postgresql://postgres@10.0.0.5:5432/postgres")
    with pytest.raises(ValueError, match="expected postgresql://"):
        check_loopback("mysql://root@127.0.0.1/db")


def test_urls_swap_database_and_hide_password():
    url = "postgresql://bench:secret@127.0.0.1:5432/postgres"

    assert with_database(url, "bench_raw_1") == (
        "postgresql://bench:secret@127.0.0.1:5432/bench_raw_1"
    )
    assert masked(url) == "postgresql://bench:***@127.0.0.1:5432/postgres"
