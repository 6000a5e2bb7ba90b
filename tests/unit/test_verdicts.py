"""The one table of verdicts: every verdict the stories, `explain`, the text output and the
README name has all its parts there, and the README's table is the table's own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sigtrace import kubegrace, story_rules, verdicts
from sigtrace.output.text import TextWriter

README = Path(__file__).parents[2] / "README.md"
RULES = Path(story_rules.__file__).read_text()
PREDICT = (Path(story_rules.__file__).parent / "predict.py").read_text()


def test_readme_verdict_table_is_the_tables_own() -> None:
    text = README.read_text()
    assert verdicts.readme_table() in text, (
        "README.md's verdict table differs from sigtrace/verdicts.py: paste "
        "`python -c 'from sigtrace.verdicts import readme_table; print(readme_table())'`"
    )
    rows = re.findall(r"^\| `(\w+)` \| (?:yes|no) \|", text, re.M)
    assert rows == list(verdicts.VERDICTS)


@pytest.mark.parametrize("name", sorted(verdicts.VERDICTS))
def test_each_verdict_has_every_part(name: str) -> None:
    v = verdicts.VERDICTS[name]
    assert v.name == name and v.line and v.meaning and v.hint
    assert "?" not in verdicts.line(name, sig="SIGTERM", wasted=1, grace=2, code=137, culprit="x")


def test_every_verdict_the_code_gives_is_in_the_table() -> None:
    given = set(re.findall(r'Judgement\(\s*"(\w+)"', RULES))
    given |= set(re.findall(r'"(\w+)" if sig_ign else "(\w+)"', RULES)[0])
    given |= set(re.findall(r'Prediction\(\s*"(\w+)"', PREDICT))
    given |= {kubegrace.PRESTOP_ATE_GRACE}  # a slow_shutdown refined by the grace budget
    assert given and given <= set(verdicts.VERDICTS), given - set(verdicts.VERDICTS)
    assert set(verdicts.VERDICTS) <= given | {"killed_without_stop_signal", "oom_killed"}


def test_wasted_follows_the_table() -> None:
    wasting = {n for n, v in verdicts.VERDICTS.items() if v.wastes_grace}
    assert wasting == {"ignored_by_pid1", "ignored_sig_ign", "blocked", "not_forwarded"}


def test_text_output_says_the_tables_line() -> None:
    import io

    buf = io.StringIO()
    rec = {"type": "verdict", "time": "2026-01-01T00:00:00.000000000Z", "verdict": "blocked",
           "stop_signal": "SIGQUIT", "wasted_s": 2.0, "exit_code": 137, "evidence": [],
           "culprit": {"pid": 5, "comm": "app", "pid1": False}, "hint": "h"}  # fmt: skip
    TextWriter(buf).write(rec)
    assert (
        "verdict: blocked: SIGQUIT left pending: app(5) blocks it; 2.0 s wasted" in buf.getvalue()
    )


@pytest.mark.parametrize("name", sorted(verdicts.VERDICTS))
def test_each_verdict_has_an_event_reason_kubernetes_style(name: str) -> None:
    for sig in ("SIGTERM", "SIGQUIT", None):
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", verdicts.event_reason(name, sig))
    assert verdicts.event_reason("ignored_by_pid1", "SIGTERM") == "SigtermIgnoredByPID1"
