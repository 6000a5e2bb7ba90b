"""The CLI's help and its input errors, without root (parsing fails before anything loads)."""

import pytest

from sigtrace.commands.options import parse_size
from tests.tracing import run_sigtrace as run


@pytest.mark.parametrize("args", [["--help"], ["doctor", "--help"], ["replay", "--help"]])
def test_every_subcommand_has_help_with_examples(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "Examples:" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--signal", "NOPE"], 2, "unknown signal"),
        (["--signal", "RTMIN+40"], 2, "out of range"),
        (["--pid", "0"], 2, "positive process id"),
        (["--buffer-size", "4T"], 2, "is not a size"),
        (["--buffer-size", "1K"], 2, "outside 4K..1G"),
        (["daemon", "--buffer-size", "lots"], 2, "is not a size"),
        (["--format", "xml"], 2, "xml"),
        (["--no-such-option"], 2, "No such option"),
        (["replay", "/nonexistent.raw"], 2, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_its_own_code(args: list[str], code: int, words: str) -> None:
    r = run(*args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigtrace: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("text", "size"), [("4M", 4 << 20), ("512k", 512 << 10), ("65536", 65536), ("1MiB", 1 << 20)]
)
def test_buffer_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_replay_of_a_non_recording(tmp_path) -> None:
    f = tmp_path / "x.raw"
    f.write_text("hello\n")
    r = run("replay", str(f))
    assert r.returncode == 2 and "not a sigtrace raw recording" in r.stderr
