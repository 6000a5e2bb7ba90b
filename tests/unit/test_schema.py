"""The sigtrace.v1 JSON Schema: valid itself, shipped as printed, the same fields as README.md's
tables (both ways), and every recorded record valid under it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sigtrace import schema
from sigtrace.commands.replay import replay_file
from sigtrace.output.jsonl import JsonlWriter
from tests.tracing import check_schema, parse_lines, schema_errors
from tests.unit.test_stories import run

REPO = Path(__file__).parents[2]
DATA = REPO / "tests" / "data"
README = (REPO / "README.md").read_text()


# --- the schema itself ----------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["published", "strict"])
def test_schema_is_valid_draft_2020_12(strict: bool) -> None:
    jsonschema.Draft202012Validator.check_schema(schema.build(strict))


def test_shipped_file_is_the_source_and_the_command_prints_it() -> None:
    assert schema.published() == schema.render(), (
        "sigtrace/data/sigtrace.v1.schema.json is stale: regenerate it with "
        "`python -c 'from sigtrace import schema; print(schema.render(), end=\"\")' > "
        "sigtrace/data/sigtrace.v1.schema.json`"
    )
    r = subprocess.run(
        [sys.executable, "-m", "sigtrace", "schema"], capture_output=True, text=True, check=True
    )
    assert json.loads(r.stdout) == schema.build()
    r = subprocess.run(
        [sys.executable, "-m", "sigtrace", "schema", "--strict"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(r.stdout) == schema.build(strict=True)


def _a_verdict() -> dict:
    records = [json.loads(line) for line in (DATA / "stories" / "shellform.jsonl").open()]
    return run(records)[0]


def test_strict_refuses_an_unknown_field_or_value_the_published_form_accepts() -> None:
    published = jsonschema.Draft202012Validator(schema.build())
    strict = jsonschema.Draft202012Validator(schema.build(strict=True))
    good = _a_verdict()
    assert not list(strict.iter_errors(good))
    for bad in ({**good, "blame": None}, {**good, "verdict": "teleported"}):
        assert list(strict.iter_errors(bad)), bad
        assert not list(published.iter_errors(bad)), bad
    # wrong types and missing fields fail both forms
    for bad in ({**good, "grace_s": "2s"}, {k: v for k, v in good.items() if k != "time"}):
        assert list(strict.iter_errors(bad)) and list(published.iter_errors(bad))
    assert list(published.iter_errors({**good, "type": "doctor"}))


def test_every_branch_pins_its_type_and_the_common_fields() -> None:
    full = schema.build(strict=True)
    assert [b["if"]["properties"]["type"]["const"] for b in full["allOf"]] == list(schema.RECORDS)
    for b in full["allOf"]:
        assert {"schema", "type", "time"} <= set(b["then"]["required"])


# --- README.md's tables and the schema name the same fields -----------------------------------


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


SCHEMA_TEXT = _section("Output schema")


def _depth0_fields(text: str) -> list[tuple[str, str]]:
    """(field, its description) for every `name` outside parentheses, in order."""
    out: list[tuple[str, str]] = []
    depth, i = 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "`":
            end = text.index("`", i + 1)
            token = text[i + 1 : end]
            if depth == 0 and re.fullmatch(r"[a-z_][a-z0-9_]*", token):
                out.append((token, ""))
            elif out:
                out[-1] = (out[-1][0], out[-1][1] + text[i : end + 1])
            i = end + 1
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if out:
            out[-1] = (out[-1][0], out[-1][1] + ch)
        i += 1
    return out


def _table_fields(table: str) -> list[tuple[str, str]]:
    out = []
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2:
            break
        for name in re.findall(r"`([a-z_][a-z0-9_]*)`", cells[0]):
            out.append((name, cells[1]))
    return out


def _subfields(description: str) -> set[str] | None:
    """The names in a description's first `{...}` (e.g. `[{pid, comm}]`), None without one."""
    m = re.search(r"\{([^{}]*)\}", description)
    if m is None:
        return None
    names = {part.split(":")[0].strip() for part in m.group(1).split(",")}
    return {n for n in names if re.fullmatch(r"[a-z_][a-z0-9_]*", n)}


def _table_after(marker: str) -> list[tuple[str, str]]:
    at = SCHEMA_TEXT.index(marker)
    table_at = SCHEMA_TEXT.index("\n|", at)
    end = SCHEMA_TEXT.find("\n\n", table_at)
    return _table_fields(SCHEMA_TEXT[table_at + 1 : end])


def readme_records() -> dict[str, list[tuple[str, str]]]:
    """Record type -> its fields as README.md documents them (table or prose)."""
    out = {}
    for m in re.finditer(r'`type: "(\w+)"` — ', SCHEMA_TEXT):
        para_end = SCHEMA_TEXT.find("\n\n", m.end())
        para = SCHEMA_TEXT[m.end() : para_end]
        if SCHEMA_TEXT[para_end + 2 : para_end + 3] == "|":  # a table follows
            out[m.group(1)] = _table_after(m.group(0))
        else:
            out[m.group(1)] = _depth0_fields(para.split(": ", 1)[1] if ": `" in para else para)
    return out


def _object_fields(spec: Any) -> dict[str, Any] | None:
    """A field spec's object properties (through null(), array(), $ref, maps), else None."""
    if isinstance(spec, schema._Opt):
        return _object_fields(spec.spec)
    if isinstance(spec, tuple) and spec[0] == "null":
        return _object_fields(spec[1])
    if isinstance(spec, dict):
        if "$fields" in spec:
            return spec["$fields"]
        if "$ref" in spec:
            return _object_fields(schema.DEFS[spec["$ref"].rsplit("/", 1)[1]])
        for key in ("items", "additionalProperties"):
            if isinstance(spec.get(key), dict):
                return _object_fields(spec[key])
    return None


def _compare(where: str, documented: list[tuple[str, str]], fields: dict[str, Any]) -> list[str]:
    problems = []
    names = {n for n, _ in documented}
    for missing in sorted(set(fields) - names):
        problems.append(f"{where}.{missing}: in the schema, not in README.md")
    for missing in sorted(names - set(fields)):
        problems.append(f"{where}.{missing}: in README.md, not in the schema (sigtrace/schema.py)")
    for name, desc in documented:
        sub = _subfields(desc)
        inner = _object_fields(fields.get(name))
        if sub is not None and inner is not None and sub != set(inner):
            problems.append(
                f"{where}.{name}: README.md says {{{', '.join(sorted(sub))}}}, "
                f"the schema {{{', '.join(sorted(inner))}}}"
            )
    return problems


def test_readme_and_schema_name_the_same_record_types_and_fields() -> None:
    documented = readme_records()
    problems = [
        f"record type {t!r}: documented and not in the schema, or the reverse"
        for t in sorted(set(documented) ^ set(schema.RECORDS))
    ]
    common = _table_after("Every record:")
    problems += _compare("<every record>", common, {**schema.COMMON, "type": None})
    problems += _compare(
        "<process>", _table_after("A process object"), schema.DEFS["process"]["$fields"]
    )
    problems += _compare(
        "<container>", _table_after("A container object"), schema.DEFS["container"]["$fields"]
    )
    for kind in sorted(set(documented) & set(schema.RECORDS)):
        problems += _compare(kind, documented[kind], schema.RECORDS[kind])
    assert not problems, "README.md and sigtrace/schema.py disagree:\n" + "\n".join(problems)


def test_the_readme_parser_sees_what_it_should() -> None:
    """The comparison above is only as good as this parser: pin what it reads."""
    recs = readme_records()
    assert [n for n, _ in recs["exit"]] == [
        "process",
        "exit_code",
        "signal",
        "core_dumped",
        "oom",
        "caught",
        "derived",
    ]
    verdict = dict(recs["verdict"])
    assert _subfields(verdict["exits"]) == {"pid", "comm", "exit_code", "signal", "ended_by"}
    assert _subfields(verdict["pid1"]) == {"pid", "comm", "cmdline"}
    assert "ended_by" not in verdict and "runtime_kill" not in verdict
    assert _subfields(dict(recs["signal"])["target_state"]) >= {"handler", "blocked", "waiting"}
    # a field missing on either side is reported
    assert _compare("x", [("a", ""), ("b", "")], {"a": schema.INT, "c": schema.INT}) == [
        "x.c: in the schema, not in README.md",
        "x.b: in README.md, not in the schema (sigtrace/schema.py)",
    ]


def _enum_values(spec: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(spec, schema._Opt):
        return _enum_values(spec.spec)
    if isinstance(spec, tuple):
        if spec[0] == "enum":
            return set(spec[1])
        if spec[0] == "reason":
            return set(schema.REASONS)
        return _enum_values(spec[1])
    if isinstance(spec, dict):
        for v in spec.values():
            found |= _enum_values(v)
    return found


def test_every_enumerated_value_is_documented() -> None:
    values: set[str] = set()
    for spec in [*schema.RECORDS.values(), *schema.DEFS.values()]:
        values |= _enum_values(spec)
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    backticked = set()
    for token in re.findall(r"`([^`]+)`", prose):
        backticked |= {token, *re.findall(r"\w+", token)}  # `{handler: default/ignore/...}`
    assert values - backticked == set(), "enumerated values README.md does not mention"


def test_verdicts_are_the_readme_table_exactly() -> None:
    table = _section("Termination stories")
    at = table.index("| verdict | wastes the grace period | meaning |")
    documented = {name for name, _ in _table_fields(table[at : table.find("\n\n", at)])}
    assert documented == set(schema.VERDICTS[1])


# --- every recorded record is valid -------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((DATA / "stories").glob("*.jsonl")), ids=lambda p: p.stem)
def test_recorded_stories_and_their_verdicts_are_valid(path: Path) -> None:
    records = parse_lines(path.read_text())  # validates each
    verdicts = run(records)
    assert verdicts, "no verdict: nothing of the verdict branch was checked"
    check_schema(verdicts)


@pytest.mark.parametrize("path", sorted((DATA / "streams").glob("*.raw")), ids=lambda p: p.stem)
def test_replayed_streams_are_valid(path: Path) -> None:
    import io

    out = io.StringIO()
    assert replay_file(str(path), JsonlWriter(out)) > 0
    types = {r["type"] for r in parse_lines(out.getvalue())}
    assert {"signal", "exit"} <= types


def test_a_bad_record_is_named_with_its_path() -> None:
    rec = json.loads((DATA / "stories" / "shellform.jsonl").open().readline())
    rec["backend"] = "magic"
    assert any(e.startswith("backend:") for e in schema_errors(rec))
    with pytest.raises(AssertionError, match=r"breaks sigtrace\.v1"):
        check_schema([rec])


def test_doctor_jsonl_is_one_valid_record() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sigtrace", "doctor", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    (rec,) = parse_lines(r.stdout)
    assert rec["type"] == "doctor" and rec["time"]
    assert ", " not in r.stdout.split('"backends"')[0]  # written by orjson, as the records
