"""packaging/logging/: Fluent Bit and Vector configs, checked by structure.

Neither agent is in Debian 12 or on PyPI, so they cannot run here. Instead: every key is one
the plugin knows (typos fail), every input reaches an output, every parser named exists, the
time format matches the times sigtrace's own Clock writes, and the paths and selectors agree
with the systemd unit and the DaemonSet."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from sigtrace.timefmt import Clock

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
LOGGING = PACKAGING / "logging"
FLUENT_BIT = LOGGING / "fluent-bit.conf"
VECTOR = LOGGING / "vector.toml"

Section = tuple[str, dict[str, str]]


def fluent_bit_sections(path: Path) -> list[Section]:
    """Fluent Bit's classic format: `[SECTION]` then indented `Key Value` lines."""
    sections: list[Section] = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"\[([A-Z]+)\]", line):
            sections.append((m.group(1), {}))
            continue
        assert sections and raw.startswith("    "), f"{path.name}:{n}: {raw!r}"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}:{n}: {key} has no value"
        props = sections[-1][1]
        assert key.lower() not in props, f"{path.name}:{n}: {key} twice"
        props[key.lower()] = value.strip()
    return sections


# The keys each plugin documents (lower case), limited to what these files may reasonably use.
FB_KEYS = {
    "SERVICE": {"flush", "log_level", "parsers_file", "daemon", "http_server", "storage.path"},
    "PARSER": {"name", "format", "time_key", "time_format", "time_keep", "regex", "types"},
    "tail": {
        "name",
        "tag",
        "path",
        "exclude_path",
        "parser",
        "multiline.parser",
        "db",
        "read_from_head",
        "refresh_interval",
        "rotate_wait",
        "buffer_chunk_size",
        "buffer_max_size",
        "skip_long_lines",
        "mem_buf_limit",
        "path_key",
    },
    "grep": {"name", "match", "regex", "exclude"},
    "systemd": {"name", "tag", "systemd_filter", "db", "read_from_tail", "strip_underscores"},
    "rewrite_tag": {"name", "match", "rule", "emitter_name"},
    "parser": {"name", "match", "key_name", "parser", "reserve_data", "preserve_key"},
    "stdout": {"name", "match", "format", "json_date_key", "json_date_format"},
}
FB_BUILTIN_MULTILINE = {"docker", "cri", "go", "python", "java"}


def unit_output_path() -> str:
    unit = (PACKAGING / "systemd" / "sigtrace.service").read_text()
    argv = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()  # type: ignore[union-attr]
    return argv[argv.index("--output") + 1]


def daemonset() -> dict:
    docs = yaml.safe_load_all((PACKAGING / "kubernetes" / "sigtrace.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "DaemonSet")


def sigtrace_times() -> list[str]:
    clock = Clock(offset_ns=0)
    return [clock.now_iso(), clock.iso(1_700_000_000_000_000_000), clock.iso(0)]


def strptime_regex(fmt: str) -> re.Pattern[str]:
    """A regex for what a Fluent Bit (flb_strptime) time format accepts."""
    table = {
        "%Y": r"\d{4}",
        "%m": r"\d{2}",
        "%d": r"\d{2}",
        "%H": r"\d{2}",
        "%M": r"\d{2}",
        "%S": r"\d{2}",
        "%L": r"\d{1,9}",  # Fluent Bit's fractional seconds, up to nanoseconds
        "%z": r"(?:Z|[+-]\d{2}:?\d{2})",  # flb_strptime takes "Z" for UTC
    }
    parts = re.split(r"(%[A-Za-z])", fmt)
    return re.compile("".join(table[p] if p in table else re.escape(p) for p in parts))


def test_fluent_bit_keys_are_known() -> None:
    for path in (FLUENT_BIT, LOGGING / "parsers.conf"):
        for kind, props in fluent_bit_sections(path):
            plugin = kind if kind in ("SERVICE", "PARSER") else props["name"]
            unknown = set(props) - FB_KEYS[plugin]
            assert not unknown, f"{path.name} [{kind}] {plugin}: unknown keys {unknown}"


def test_fluent_bit_pipeline() -> None:
    sections = fluent_bit_sections(FLUENT_BIT)
    (service,) = [p for k, p in sections if k == "SERVICE"]
    parsers_file = LOGGING / service["parsers_file"]
    parsers = {p["name"]: p for k, p in fluent_bit_sections(parsers_file) if k == "PARSER"}
    inputs = [p for k, p in sections if k == "INPUT"]
    filters = [p for k, p in sections if k == "FILTER"]
    outputs = [p for k, p in sections if k == "OUTPUT"]
    assert inputs and outputs
    # rewrite_tag re-emits matching records under a new tag: those are inputs too
    retagged = [{"tag": f["rule"].split()[2]} for f in filters if f["name"] == "rewrite_tag"]
    for p in inputs + retagged:
        assert any(fnmatch.fnmatchcase(p["tag"], o["match"]) for o in outputs), p
        if "parser" in p:
            assert p["parser"] in parsers, p
        if "multiline.parser" in p:
            assert p["multiline.parser"] in FB_BUILTIN_MULTILINE | set(parsers), p
    for f in filters:
        assert any(fnmatch.fnmatchcase(p["tag"], f["match"]) for p in inputs + retagged), f
        if f["name"] == "parser":
            assert f["parser"] in parsers, f
    # Every input's records (and log lines) end up parsed by sigtrace_json (directly, or by a
    # filter): a stream of records has no input whose lines pass unparsed.
    for p in inputs + retagged:
        parsed_by = {p.get("parser")} | {
            f["parser"]
            for f in filters
            if f["name"] == "parser" and fnmatch.fnmatchcase(p["tag"], f["match"])
        }
        assert "sigtrace_json" in parsed_by, p


def test_fluent_bit_time_is_the_records_time() -> None:
    (parser,) = [p for _, p in fluent_bit_sections(LOGGING / "parsers.conf")]
    assert parser["format"] == "json"
    assert parser["time_key"] == "time"
    assert parser["time_keep"] == "On"
    pattern = strptime_regex(parser["time_format"])
    for t in sigtrace_times():
        assert pattern.fullmatch(t), (parser["time_format"], t)
    assert not pattern.fullmatch("2024-05-01 10:00:00Z")  # the regex is not vacuous


def test_fluent_bit_paths_match_the_unit_and_the_daemonset() -> None:
    tails = {p["tag"]: p for k, p in fluent_bit_sections(FLUENT_BIT) if k == "INPUT"}
    assert tails["sigtrace.host"]["path"] == unit_output_path()
    ds = daemonset()
    ns = ds["metadata"]["namespace"]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    # The kubelet's name for a pod's container log: <pod>_<namespace>_<container>-<id>.log
    log = f"/var/log/containers/{ds['metadata']['name']}-x7k2q_{ns}_{c['name']}-{'ab' * 32}.log"
    assert fnmatch.fnmatchcase(log, tails["sigtrace.k8s"]["path"])
    other = f"/var/log/containers/web-x7k2q_shop_web-{'ab' * 32}.log"
    assert not fnmatch.fnmatchcase(other, tails["sigtrace.k8s"]["path"])


VECTOR_KEYS = {
    "file": {"type", "include", "exclude", "read_from", "max_line_bytes", "ignore_older_secs"},
    "kubernetes_logs": {"type", "extra_label_selector", "extra_field_selector", "max_line_bytes"},
    "journald": {"type", "include_units", "current_boot_only"},
    "remap": {"type", "inputs", "source", "file", "drop_on_error", "drop_on_abort"},
    "console": {"type", "inputs", "encoding", "target"},
}


def test_vector_graph() -> None:
    cfg = tomllib.loads(VECTOR.read_text())
    assert set(cfg) <= {"data_dir", "sources", "transforms", "sinks"}
    nodes = {**cfg["sources"], **cfg.get("transforms", {}), **cfg["sinks"]}
    for name, node in nodes.items():
        unknown = set(node) - VECTOR_KEYS[node["type"]]
        assert not unknown, f"{name}: unknown keys {unknown}"
        for i in node.get("inputs", []):
            assert i in cfg["sources"] or i in cfg.get("transforms", {}), f"{name}: input {i}"

    def reaches_sink(name: str) -> bool:
        users = [n for n, node in nodes.items() if name in node.get("inputs", [])]
        return any(n in cfg["sinks"] or reaches_sink(n) for n in users)

    for name in cfg["sources"]:
        assert reaches_sink(name), name
        # ...and through the remap that parses the records or the one for the log lines.
        parsed_by = [t for t in ("sigtrace_records", "sigtrace_logs") if name in nodes[t]["inputs"]]
        assert parsed_by, name


def test_vector_remap_lifts_time() -> None:
    remap = tomllib.loads(VECTOR.read_text())["transforms"]["sigtrace_records"]
    assert remap["type"] == "remap" and remap["drop_on_error"] is True
    code = "\n".join(line.split("#", 1)[0].strip() for line in remap["source"].splitlines()).strip()
    assert "parse_json!(string!(.message))" in code
    # chrono's %+ is RFC 3339 with any fraction and a "Z" or offset: what sigtrace writes.
    assert '.timestamp = parse_timestamp!(string!(.time), format: "%+")' in code
    assert ".stream" in code  # stderr lines are not records
    assert code.count("{") == code.count("}")


def test_vector_sources_match_the_unit_and_the_daemonset() -> None:
    src = tomllib.loads(VECTOR.read_text())["sources"]
    assert src["sigtrace_host"]["include"] == [unit_output_path()]
    key, _, value = src["sigtrace_k8s"]["extra_label_selector"].partition("=")
    assert daemonset()["spec"]["template"]["metadata"]["labels"][key] == value


@pytest.mark.parametrize("path", [FLUENT_BIT, LOGGING / "parsers.conf", VECTOR])
def test_no_tabs_or_trailing_space(path: Path) -> None:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        assert "\t" not in line and line == line.rstrip(), f"{path.name}:{n}"
