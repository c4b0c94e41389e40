"""Pure functions: durations, sizes, -format patterns, targets, checksums, ecpds flag parsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib

import pytest

from ecflow_lab.transfer.destinations import normalise_options
from ecflow_lab.transfer.ecpds import UsageError, parse_args
from ecflow_lab.transfer.wire import (
    Checksum,
    TransferError,
    clean_target,
    java_format_to_strftime,
    parse_at,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize("text, seconds", [
    ("2d", 172800), ("1h30m", 5400), ("45s", 45), ("500z", 0.5), ("1w", 604800), ("3", 10800),
    ("PT1H", 3600), ("P1DT2H", 93600), ("1.5h", 5400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "2x", "h", "1h 2q", "P"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes():
    assert parse_size("64k") == 65536
    assert parse_size("4M") == 4 << 20
    assert parse_size("1.5G") == int(1.5 * (1 << 30))
    with pytest.raises(ValueError):
        parse_size("lots")


def test_java_date_format():
    assert java_format_to_strftime("yyyyMMddHHmmss") == "%Y%m%d%H%M%S"
    assert java_format_to_strftime("yyyy-MM-dd'T'HH:mm") == "%Y-%m-%dT%H:%M"
    t = parse_at("20300102030405")
    assert dt.datetime.fromtimestamp(t) == dt.datetime(2030, 1, 2, 3, 4, 5)
    assert parse_at("2030-01-02 03:04", "yyyy-MM-dd HH:mm") == dt.datetime(2030, 1, 2, 3, 4).timestamp()
    with pytest.raises(ValueError, match="expected format"):
        parse_at("tomorrow")


def test_clean_target():
    assert clean_target("a//b/./c.grib") == "a/b/c.grib"
    assert clean_target("/abs/x") == "abs/x"
    for bad in ("", "../x", "a/../../x", "."):
        with pytest.raises(TransferError):
            clean_target(bad)


def test_checksums_match_reference_implementations():
    data = b"x" * 100_000 + b"tail"
    for algo in ("sha256", "md5", "blake2b"):
        c = Checksum(algo)
        c.update(data[:5000])
        c.update(memoryview(data)[5000:])
        assert c.hexdigest() == f"{algo}:{hashlib.new(algo, data).hexdigest()}"
    c = Checksum("adler32")
    c.update(data)
    assert c.hexdigest() == f"adler32:{zlib.adler32(data):08x}"
    with pytest.raises(TransferError):
        Checksum("nope")


def test_destination_options_are_validated():
    o = normalise_options({"max-connections": "3", "retry_frequency": "30s", "rate": "2M"})
    assert (o["max_connections"], o["retry_frequency"], o["rate"]) == (3, 30.0, 2 << 20)
    with pytest.raises(TransferError, match="unknown destination option 'colour'"):
        normalise_options({"colour": "red"})
    with pytest.raises(TransferError, match="max_connections"):
        normalise_options({"max_connections": 0})
    with pytest.raises(TransferError, match="verify"):
        normalise_options({"verify": "maybe"})


def test_ecpds_flags():
    o = parse_args(["-destination", "arch", "-source", "f.grib", "-priority", "5", "-metadata", "stream=oper,step=6",
                    "-lifetime", "1d", "-standby"])
    assert o["destination"] == "arch" and o["priority"] == 5 and o["standby"] is True
    assert o["metadata"] == {"stream": "oper", "step": "6"}


@pytest.mark.parametrize("argv, message", [
    (["-dest", "x"], "illegal option -dest (did you mean -destination?)"),
    (["-md5"], "illegal option -md5"),
    (["-destination"], "option -destination needs a value"),
    (["-destination", "-source", "f"], "needs a value"),
    (["-destination", "d", "-force", "-requeue"], "-force and -requeue"),
    (["-destination", "d", "-purge", "-force"], "-purge cannot"),
    (["-destination", "d", "-groupby", "g", "-remove"], "-remove is not allowed with -groupby"),
    (["-destination", "d", "-index"], "-index needs -groupby"),
    (["-scheduler", "-start", "-stop"], "only one of"),
    (["-destination", "d", "-priority", "100"], "0..99"),
    (["-destination", "d", "-lifetime", "soon"], "-lifetime"),
    (["-destination", "d", "-metadata", "novalue"], "key=value"),
    (["-groupby", "x" * 65, "-destination", "d"], "1 to 64"),
    (["stray"], "unexpected argument"),
])
def test_ecpds_usage_errors(argv, message):
    with pytest.raises(UsageError) as err:
        parse_args(argv)
    assert message in str(err.value)


def test_master_addresses(monkeypatch):
    from ecflow_lab.transfer.client import default_master, normalise_address

    assert normalise_address("127.0.0.1:2640") == "tcp://127.0.0.1:2640"
    assert normalise_address("tcp://h:1") == "tcp://h:1"
    with pytest.raises(TransferError, match="bad master address"):
        normalise_address("nonsense")
    monkeypatch.delenv("ECPDS_MASTER", raising=False)
    monkeypatch.setenv("ECHOST", "h1,h2")
    monkeypatch.setenv("ECPORT", "9640")
    assert default_master() == "tcp://h1:9640"
    assert default_master("other", 1) == "tcp://other:1"
    monkeypatch.setenv("ECPDS_MASTER", "m:7")
    assert default_master() == "tcp://m:7"
