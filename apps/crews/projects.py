"""CrewAI projects as zip archives: read one (``config/agents.yaml``, ``config/tasks.yaml``, an
optional ``crew.yaml`` / ``crew.jsonc`` and ``crew.py``, read statically with ``ast`` — never run)
into crew fields plus a report of what was mapped and defaulted (anything refused is a
``ProjectError``: a 400 naming it); and write a crew back in the same layout."""

from __future__ import annotations

import io
import json
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from typing import NoReturn

import yaml

from apps.crews import crewpy
from apps.crews.keys import CREW_KEYS
from apps.crews.specs import dump_yaml

MAX_ARCHIVE_BYTES = 5 * 1024 * 1024
MAX_MEMBERS = 500
MAX_MEMBER_BYTES = 1024 * 1024  # a file the import reads
MAX_TOTAL_BYTES = 20 * 1024 * 1024  # everything the archive says it unpacks to
MAX_PY_FILES = 50
CREW_FILE_KEYS = tuple(CREW_KEYS) + ("agents", "tasks")


class ProjectError(Exception):
    """A project the import cannot read: ``errors`` are ``{field, message}`` for the 400."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass
class Report:
    mapped: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    missing_tools: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "mapped": self.mapped,
            "defaulted": self.defaulted,
            "missing_tools": self.missing_tools,
        }


@dataclass
class Project:
    agents: dict
    tasks: dict
    crew: dict  # crew-level keys (name, process, planning, manager_llm, …)
    report: Report
    agents_text: str = ""  # the YAML as written, kept when nothing changed it
    tasks_text: str = ""


# --- the archive ---------------------------------------------------------------------------------


def _fail(message: str, field_name: str = "file") -> NoReturn:
    raise ProjectError([{"field": field_name, "message": message}])


def _safe_name(name: str) -> str:
    """The member's path, refusing absolute paths, drive letters and ``..`` (zip slip)."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in clean.split("/"):
        _fail(f"the archive member {name!r} has an unsafe path (absolute or with '..')")
    return posixpath.normpath(clean)


def read_archive(data: bytes) -> dict[str, bytes]:
    """The project's text files (YAML, JSONC, Python) by path, within the size and count limits."""
    if len(data) > MAX_ARCHIVE_BYTES:
        _fail(f"the archive is over {MAX_ARCHIVE_BYTES // (1024 * 1024)} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        _fail(f"not a readable zip archive ({exc})")
    if len(infos) > MAX_MEMBERS:
        _fail(f"the archive has {len(infos)} members; at most {MAX_MEMBERS}")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        _fail(f"the archive unpacks to more than {MAX_TOTAL_BYTES // (1024 * 1024)} MB")
    files: dict[str, bytes] = {}
    for info in infos:
        name = _safe_name(info.filename)
        if info.is_dir() or "__pycache__" in name or "/." in "/" + name:
            continue
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            _fail(f"the archive member {info.filename!r} is a symbolic link")
        if not name.endswith((".yaml", ".yml", ".jsonc", ".json", ".py")):
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            _fail(f"{name} is over {MAX_MEMBER_BYTES // 1024} KB")
        try:
            with archive.open(info) as member:
                body = member.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as exc:
            _fail(f"{name} cannot be read ({exc})")
        if len(body) > MAX_MEMBER_BYTES:
            _fail(f"{name} is over {MAX_MEMBER_BYTES // 1024} KB")
        files[name] = body
    return files


def _text(files: dict[str, bytes], name: str) -> str:
    try:
        return files[name].decode("utf-8-sig")
    except UnicodeDecodeError:
        _fail(f"{name} is not UTF-8 text")


def _find(files: dict[str, bytes], basenames: tuple[str, ...], what: str) -> str | None:
    """The one file with one of ``basenames``; preferring ``config/`` (CrewAI's layout)."""
    found = [n for n in files if posixpath.basename(n) in basenames and "/tests/" not in "/" + n]
    if len(found) > 1:
        in_config = [n for n in found if posixpath.basename(posixpath.dirname(n)) == "config"]
        found = in_config if len(in_config) == 1 else found
    if len(found) > 1:
        _fail(f"the archive has more than one {what}: {', '.join(sorted(found))}")
    return found[0] if found else None


# --- crew.yaml / crew.jsonc ------------------------------------------------------------------------

_JSONC_TOKENS = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/|,(?=\s*[}\]])', re.DOTALL)


def parse_jsonc(text: str) -> object:
    """JSON with ``//`` and ``/* */`` comments and trailing commas (strings left alone)."""

    def keep(match):
        token = match.group(0)
        return token if token.startswith('"') else ""

    return json.loads(_JSONC_TOKENS.sub(keep, text))


def _crew_file(files, report: Report) -> dict:
    name = _find(files, ("crew.yaml", "crew.yml", "crew.jsonc", "crew.json"), "crew.yaml / crew.jsonc")
    if name is None:
        return {}
    report.files.append(name)
    text = _text(files, name)
    try:
        data = parse_jsonc(text) if name.endswith((".jsonc", ".json")) else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        _fail(f"{name} cannot be parsed: {exc}", "crew")
    if data is None:
        return {}
    if not isinstance(data, dict):
        _fail(f"{name} must be a mapping of crew keys", "crew")
    unknown = [k for k in data if k not in CREW_FILE_KEYS]
    if unknown:
        raise ProjectError(
            [{"field": "crew", "message": f"{name}: unknown crew key {k!r} (see docs/crewai.md)"} for k in unknown]
        )
    return data


def _yaml_mapping(files, name: str, field_name: str) -> tuple[dict, str]:
    text = _text(files, name)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _fail(f"{name}: YAML syntax error: {exc}", field_name)
    if not isinstance(data, dict):
        _fail(f"{name} must be a mapping of names to definitions", field_name)
    return data, text


# --- the project -----------------------------------------------------------------------------------


def _definitions(files, crew: dict, what: str, report: Report) -> tuple[dict, str]:
    """``agents`` / ``tasks``: the YAML file (and its text), else the crew file's mapping."""
    name = _find(files, (f"{what}.yaml", f"{what}.yml"), f"{what}.yaml")
    if name:
        report.files.append(name)
        return _yaml_mapping(files, name, f"{what}_yaml")
    if isinstance(crew.get(what), dict):
        return crew[what], ""
    _fail(
        f"the archive has no {what}.yaml (CrewAI's config/{what}.yaml) and crew.yaml / crew.jsonc names no `{what}`",
        f"{what}_yaml",
    )


def read_project(data: bytes) -> Project:
    """The CrewAI project in ``data`` (a zip) as agents, tasks, crew keys and a report."""
    files = read_archive(data)
    report = Report()
    crew = _crew_file(files, report)
    agents, agents_text = _definitions(files, crew, "agents", report)
    tasks, tasks_text = _definitions(files, crew, "tasks", report)
    crew = {k: v for k, v in crew.items() if k not in ("agents", "tasks")}
    project = Project(
        agents=agents, tasks=tasks, crew=crew, report=report, agents_text=agents_text, tasks_text=tasks_text
    )
    report.mapped += [f"crew: {k}" for k in crew]
    crew_py = _find(files, ("crew.py",), "crew.py")
    if crew_py:
        report.files.append(crew_py)
        sources = {n: _text(files, n) for n in list(files)[: MAX_PY_FILES * 10] if n.endswith(".py")}
        if len(sources) > MAX_PY_FILES:
            _fail(f"the archive has more than {MAX_PY_FILES} Python files")
        crewpy.apply(project, crew_py, sources)
    return project


def project_fields(project: Project) -> dict:
    """Crew fields for ``crew_create`` (the YAML as written when the import changed nothing in it)."""
    settings = {
        k: project.crew[k] for k in project.crew if k not in ("name", "description", "process", "model", "verbose")
    }
    fields = {
        key: project.crew[key] for key in ("name", "description", "process", "model", "verbose") if key in project.crew
    }
    fields["agents_yaml"] = project.agents_text or dump_yaml(project.agents)
    fields["tasks_yaml"] = project.tasks_text or dump_yaml(project.tasks)
    if settings:
        fields["config"] = settings
    return fields


def drop_tools(project: Project, missing: list[str]) -> None:
    """Take the tools the organization lacks out of agents and tasks (``allow_missing_tools``)."""
    for kind, entries in (("agent", project.agents), ("task", project.tasks)):
        for key, entry in entries.items():
            tools = entry.get("tools") if isinstance(entry, dict) else None
            if isinstance(tools, list) and set(tools) & set(missing):
                entry["tools"] = [t for t in tools if t not in missing]
                project.report.defaulted.append(
                    f"{kind} {key}: tools {', '.join(sorted(set(tools) & set(missing)))} "
                    "left out (the organization lacks them)"
                )
                project.agents_text = project.tasks_text = ""


# --- export ----------------------------------------------------------------------------------------


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (name or "crew").lower()).strip("_") or "crew"


def write_project(
    *,
    name: str,
    description: str,
    process: str,
    model: str,
    verbose: bool,
    config: dict,
    agents_yaml: str,
    tasks_yaml: str,
) -> bytes:
    """The crew as a CrewAI project folder zipped: ``<slug>/config/agents.yaml``,
    ``<slug>/config/tasks.yaml`` and ``<slug>/crew.yaml`` (what ``read_project`` reads back)."""
    root = slug(name)
    crew = {"name": name, "description": description, "process": process, "verbose": verbose}
    if model:
        crew["model"] = model
    crew.update({k: v for k, v in (config or {}).items() if k in CREW_KEYS and k not in crew})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{root}/config/agents.yaml", agents_yaml)
        archive.writestr(f"{root}/config/tasks.yaml", tasks_yaml)
        archive.writestr(f"{root}/crew.yaml", dump_yaml(crew))
    return buffer.getvalue()
