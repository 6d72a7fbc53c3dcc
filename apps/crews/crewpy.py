"""A CrewAI project's ``crew.py`` read statically with Python's ``ast`` (it is never imported or
run): the ``@agent`` / ``@task`` / ``@crew`` methods of the ``@CrewBase`` class give each task its
agent (``agent=self.researcher()``), context, output model and file, and the crew its process,
planning and manager; a pydantic output model becomes a JSON Schema from its field annotations."""

from __future__ import annotations

import ast
import re

_SCALARS = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "Any": {},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "HttpUrl": {"type": "string", "format": "uri"},
    "AnyUrl": {"type": "string", "format": "uri"},
    "EmailStr": {"type": "string", "format": "email"},
}
_LISTS = ("list", "List", "Sequence", "set", "Set", "tuple", "Tuple")
#: keyword arguments that are how crew.py wires things, not CrewAI keys to copy
_WIRING = {
    "config",
    "agent",
    "context",
    "tools",
    "output_json",
    "output_pydantic",
    "llm",
    "manager_llm",
    "manager_agent",
    "agents",
    "tasks",
    "process",
    "function_calling_llm",
    "planning_llm",
}


def _fail(errors: list[dict]):
    # deferred: cycle — apps.crews.projects imports this module at load
    from apps.crews.projects import ProjectError

    raise ProjectError(errors)


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def tool_name(class_name: str) -> str:
    """``SerperDevTool`` → ``serper_dev``: the organization tool a CrewAI tool class maps to."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()
    return re.sub(r"_tool$", "", snake) or snake


# --- pydantic models → JSON Schema ---------------------------------------------------------------


def pydantic_models(sources: dict[str, str]) -> dict[str, ast.ClassDef]:
    """Classes deriving from ``BaseModel`` (or from one of these) in the project's Python files."""
    classes = {}
    for text in sources.values():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        classes.update({n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)})
    models: dict[str, ast.ClassDef] = {}
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            if name not in models and any(_name(b) in ("BaseModel", *models) for b in node.bases):
                models[name] = node
                changed = True
    return models


def _annotation_schema(node, models, seen) -> dict:
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a forward reference
        return _annotation_schema(ast.Name(id=node.value), models, seen)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return {"anyOf": [_annotation_schema(node.left, models, seen), _annotation_schema(node.right, models, seen)]}
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer in _LISTS:
            return {"type": "array", "items": _annotation_schema(args[0], models, seen)}
        if outer in ("dict", "Dict", "Mapping"):
            return {"type": "object", "additionalProperties": _annotation_schema(args[-1], models, seen)}
        if outer == "Optional":
            return {"anyOf": [_annotation_schema(args[0], models, seen), {"type": "null"}]}
        if outer == "Union":
            return {"anyOf": [_annotation_schema(a, models, seen) for a in args]}
        if outer == "Literal":
            return {"enum": [a.value for a in args if isinstance(a, ast.Constant)]}
        if outer == "Annotated":
            return _annotation_schema(args[0], models, seen)
    name = _name(node)
    if name in _SCALARS:
        return dict(_SCALARS[name])
    if name in _LISTS:
        return {"type": "array"}
    if name in models and name not in seen:
        return model_schema(models[name], models, seen | {name})
    return {}


def _field_info(value) -> tuple[bool, str]:
    """(required, description) of a field from its default (``= …``, ``Field(...)``)."""
    if value is None:
        return True, ""
    if isinstance(value, ast.Call) and _name(value.func) == "Field":
        description = next(
            (k.value.value for k in value.keywords if k.arg == "description" and isinstance(k.value, ast.Constant)), ""
        )
        has_default = any(k.arg in ("default", "default_factory") for k in value.keywords) or (
            value.args and not (isinstance(value.args[0], ast.Constant) and value.args[0].value is Ellipsis)
        )
        return not has_default, str(description)
    return False, ""


def model_schema(node: ast.ClassDef, models: dict, seen: frozenset = frozenset()) -> dict:
    """The JSON Schema of a pydantic model class from its annotated fields (and its bases')."""
    properties: dict[str, dict] = {}
    required: list[str] = []
    for base in node.bases:
        if _name(base) in models and _name(base) not in seen:
            parent = model_schema(models[_name(base)], models, seen | {_name(base)})
            properties.update(parent.get("properties", {}))
            required += parent.get("required", [])
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and not item.target.id.startswith("_"):
            schema = _annotation_schema(item.annotation, models, seen | {node.name})
            is_required, description = _field_info(item.value)
            if description:
                schema["description"] = description
            properties[item.target.id] = schema
            if is_required and item.target.id not in required:
                required.append(item.target.id)
    schema = {"title": node.name, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


# --- crew.py ---------------------------------------------------------------------------------------


def _decorated(node, name: str) -> bool:
    return any(_name(d) == name for d in node.decorator_list)


def _config_key(func: ast.FunctionDef, attribute: str) -> str | None:
    """The key of ``self.<attribute>['key']`` in the method's body."""
    for node in ast.walk(func):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == attribute
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            return node.slice.value
    return None


def _built_call(func: ast.FunctionDef, class_name: str) -> ast.Call | None:
    return next((n for n in ast.walk(func) if isinstance(n, ast.Call) and _name(n.func) == class_name), None)


def _self_method(node) -> str | None:
    """``self.researcher()`` → ``researcher``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _name(node.func.value) == "self":
        return node.func.attr
    return None


class _Reader:
    def __init__(self, project, crew_py: str, sources: dict[str, str]):
        self.project, self.crew_py, self.report = project, crew_py, project.report
        try:
            self.tree = ast.parse(sources[crew_py])
        except SyntaxError as exc:
            _fail([{"field": "crew_py", "message": f"{crew_py}: Python syntax error on line {exc.lineno}: {exc.msg}"}])
        self.models = pydantic_models(sources)
        self.module_calls = {
            t.id: n.value
            for n in self.tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        self.agent_methods: dict[str, str] = {}
        self.task_methods: dict[str, str] = {}
        self.refused: list[str] = []

    def literal(self, node):
        try:
            return True, ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False, None

    def model_name(self, node) -> str | None:
        """A model from a literal or ``LLM(model="…")``."""
        ok, value = self.literal(node)
        if ok and isinstance(value, str):
            return value
        call = self.module_calls.get(_name(node)) if isinstance(node, ast.Name) else node
        if isinstance(call, ast.Call) and _name(call.func) in ("LLM", "ChatOpenAI", "ChatAnthropic"):
            for kw in call.keywords:
                if kw.arg in ("model", "model_name"):
                    ok, value = self.literal(kw.value)
                    if ok and isinstance(value, str):
                        return value
        return None

    def tool_names(self, node, where: str) -> list[str]:
        names = []
        for item in node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]:
            call = self.module_calls.get(item.id) if isinstance(item, ast.Name) else item
            class_name = _name(call.func) if isinstance(call, ast.Call) else ""
            if not class_name:
                self.refused.append(f"{where}: tool {ast.unparse(item)!r} is not a tool class instance")
                continue
            names.append(tool_name(class_name))
            self.report.mapped.append(f"{where}: tool {class_name}() → {tool_name(class_name)}")
        return names

    def copy_keywords(self, call: ast.Call, entry: dict, where: str) -> None:
        for kw in call.keywords:
            if kw.arg is None or kw.arg in _WIRING:
                continue
            ok, value = self.literal(kw.value)
            if ok:
                entry[kw.arg] = value
                self.report.mapped.append(f"{where}: {kw.arg} from crew.py")
            else:
                self.refused.append(
                    f"{where}: `{kw.arg}={ast.unparse(kw.value)}` is Python code, not a value "
                    "(see docs/crewai.md for what to use here)"
                )

    def set_model(self, entry: dict, key: str, node, where: str) -> None:
        model = self.model_name(node)
        if model:
            entry[key] = model
            self.report.mapped.append(f"{where}: {key} {model} from crew.py")
        else:
            self.refused.append(f"{where}: `{key}={ast.unparse(node)}` names no model this import can read")


def _crew_class(tree) -> ast.ClassDef | None:
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    return next((c for c in classes if _decorated(c, "CrewBase")), None) or next(
        (c for c in classes if any(isinstance(f, ast.FunctionDef) and _decorated(f, "task") for f in c.body)), None
    )


def apply(project, crew_py: str, sources: dict[str, str]) -> None:
    """Bindings and settings of ``crew.py`` applied to the project's agents, tasks and crew keys."""
    reader = _Reader(project, crew_py, sources)
    cls = _crew_class(reader.tree)
    if cls is None:
        project.report.defaulted.append(f"{crew_py}: no @CrewBase class; the YAML is taken as written")
        return
    methods = [f for f in cls.body if isinstance(f, ast.FunctionDef)]
    for func in methods:
        if _decorated(func, "agent"):
            reader.agent_methods[func.name] = _config_key(func, "agents_config") or func.name
        elif _decorated(func, "task"):
            reader.task_methods[func.name] = _config_key(func, "tasks_config") or func.name
    for func in methods:
        if _decorated(func, "agent"):
            _apply_agent(reader, func)
    order = []
    for func in methods:
        if _decorated(func, "task"):
            order.append(_apply_task(reader, func))
    _order_tasks(project, [key for key in order if key])
    for func in methods:
        if _decorated(func, "crew"):
            _apply_crew(reader, func)
    if reader.refused:
        _fail([{"field": "crew_py", "message": message} for message in reader.refused])
    project.agents_text = project.tasks_text = ""


def _apply_agent(reader: _Reader, func) -> None:
    key = reader.agent_methods[func.name]
    entry = reader.project.agents.setdefault(key, {})
    call = _built_call(func, "Agent")
    if call is None:
        return
    where = f"agent {key}"
    for kw in call.keywords:
        if kw.arg == "tools":
            entry["tools"] = list(dict.fromkeys((entry.get("tools") or []) + reader.tool_names(kw.value, where)))
        elif kw.arg in ("llm", "function_calling_llm"):
            reader.set_model(entry, kw.arg, kw.value, where)
    reader.copy_keywords(call, entry, where)


def _apply_task(reader: _Reader, func) -> str | None:
    key = reader.task_methods[func.name]
    entry = reader.project.tasks.setdefault(key, {})
    call = _built_call(func, "Task")
    where = f"task {key}"
    for kw in call.keywords if call else []:
        if kw.arg == "agent" and (method := _self_method(kw.value)):
            entry["agent"] = reader.agent_methods.get(method, method)
            reader.report.mapped.append(f"{where}: agent {entry['agent']} (crew.py binds self.{method}())")
        elif kw.arg == "context" and isinstance(kw.value, (ast.List, ast.Tuple)):
            entry["context"] = [reader.task_methods.get(m, m) for m in map(_self_method, kw.value.elts) if m]
            reader.report.mapped.append(f"{where}: context from crew.py")
        elif kw.arg in ("output_json", "output_pydantic"):
            model = reader.models.get(_name(kw.value))
            if model is None:
                reader.refused.append(
                    f"{where}: `{kw.arg}={ast.unparse(kw.value)}` names no pydantic model found in the project"
                )
                continue
            entry.pop("output_json", None)
            entry.pop("output_pydantic", None)
            entry["output_schema"] = model_schema(model, reader.models)
            reader.report.mapped.append(f"{where}: {kw.arg}={model.name} → output_schema (from its fields)")
        elif kw.arg == "tools":
            entry["tools"] = list(dict.fromkeys((entry.get("tools") or []) + reader.tool_names(kw.value, where)))
    if call is not None:
        reader.copy_keywords(call, entry, where)
    return key


def _order_tasks(project, order: list[str]) -> None:
    """CrewAI runs the ``@task`` methods in their order; a tasks.yaml entry without one is not run."""
    if not order:
        return
    left_out = [k for k in project.tasks if k not in order]
    for key in left_out:
        project.report.defaulted.append(
            f"task {key}: in tasks.yaml but crew.py has no @task for it; left out (CrewAI does not run it)"
        )
    project.tasks = {k: project.tasks[k] for k in order}


def _apply_crew(reader: _Reader, func) -> None:
    call = _built_call(func, "Crew")
    if call is None:
        return
    crew = reader.project.crew
    for kw in call.keywords:
        if kw.arg == "process":
            crew["process"] = _name(kw.value) if not isinstance(kw.value, ast.Constant) else kw.value.value
            reader.report.mapped.append(f"crew: process {crew['process']} from crew.py")
        elif kw.arg == "manager_llm":
            reader.set_model(crew, "manager_llm", kw.value, "crew")
        elif kw.arg == "manager_agent":
            method = _self_method(kw.value)
            if method:
                crew["manager_agent"] = reader.agent_methods.get(method, method)
                reader.report.mapped.append(f"crew: manager_agent {crew['manager_agent']} from crew.py")
            else:
                reader.refused.append(f"crew: `manager_agent={ast.unparse(kw.value)}` is not an @agent method call")
        elif kw.arg in ("agents", "tasks"):
            continue
        elif kw.arg == "planning_llm":
            reader.set_model(crew, "planning_llm", kw.value, "crew")
    reader.copy_keywords(call, crew, "crew")
