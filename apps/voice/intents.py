"""Intent parsing and agent routing of a voice command's transcript (``VoiceIntent``,
``AgentRouting``: docs/voice.md). Deterministic rules, no model call: the action comes from the command's verb,
entities from what the text names (agent numbers, numbers, times, e-mail addresses, URLs, quoted
text), and the target agent from an explicit mention (``agent 3``, ``#3``, its name), then its
role, then the client's ``context.active_agent``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: action → the phrases that ask for it (matched as whole words at the start of a clause)
ACTIONS: dict[str, tuple[str, ...]] = {
    "stop": ("stop", "cancel", "halt", "abort", "pause"),
    "restart": ("restart", "reboot", "reset"),
    "get_status": ("status", "what is the status", "what's the status", "how is", "how are", "check on", "check"),
    "execute": ("run", "execute", "start", "launch", "trigger", "do"),
    "search": ("search", "find", "look up", "lookup", "look for"),
    "summarize": ("summarize", "summarise", "sum up", "give me a summary"),
    "schedule": ("schedule", "remind", "set a reminder", "book"),
    "create": ("create", "make", "add", "new", "draft", "write"),
    "send_message": ("send", "email", "message", "tell", "notify"),
    "list": ("list", "show", "show me", "display"),
    "ask": ("ask", "what", "who", "when", "where", "why", "how", "can you", "could you", "please"),
}
_GLOBAL = re.compile(r"\b(all|every|each)\s+(agents?|workflows?)\b|\bsystem\s+(status|health)\b|\beverything\b")
_AGENT_NUMBER = re.compile(r"\b(?:agent|number|#)\s*(?:number\s*)?#?(\d{1,6})\b|(?<!\w)#(\d{1,6})\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_URL = re.compile(r"https?://\S+")
_TIME = re.compile(
    r"\b(\d{1,2}(?::\d{2})?\s?(?:am|pm)|\d{1,2}:\d{2}|noon|midnight|tomorrow|today|tonight|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|next week)\b"
)
_NUMBER = re.compile(r"(?<![\w#:])(\d+(?:\.\d+)?)(?![\w:])")
_QUOTED = re.compile(r"[\"“']([^\"”']{2,200})[\"”']")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class AgentRef:
    id: str
    agent_number: int
    name: str
    role: str = ""


@dataclass
class ParsedCommand:
    action: str
    confidence: float
    entities: dict = field(default_factory=dict)
    alternatives: list[dict] = field(default_factory=list)
    target: AgentRef | None = None
    routing_confidence: float = 0.0
    routed_by: str = ""
    fallback_agents: list[int] = field(default_factory=list)
    global_command: bool = False

    @property
    def understood(self) -> bool:
        return self.action != "unknown"

    def intent(self) -> dict:
        return {
            "action": self.action,
            "entities": self.entities,
            "confidence": round(self.confidence, 3),
            "alternative_intents": self.alternatives,
        }

    def routing(self) -> dict:
        return {
            "target_agent": self.target.agent_number if self.target else None,
            "target_agent_id": self.target.id if self.target else None,
            "target_agent_name": self.target.name if self.target else None,
            "routing_confidence": round(self.routing_confidence, 3),
            "routed_by": self.routed_by,
            "fallback_agents": self.fallback_agents,
            "global_command": self.global_command,
        }


def _normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _actions(text: str, trained: dict[str, list[str]] | None = None) -> list[tuple[str, float]]:
    """Candidate actions with a score: a phrase at the start of the text (or of a clause after a
    comma/"to"/"please") scores higher than one further in; a phrase the organization trained
    (``voice/train``) scores above a built-in one."""
    norm = _normalize(text)
    clauses = [norm] + [_normalize(c) for c in re.split(r",|\bto\b|\bplease\b|\band\b", text.lower())[1:]]
    found: dict[str, float] = {}
    sources = [(ACTIONS, 0.0)] + ([(trained, 0.05)] if trained else [])
    for table, bonus in sources:
        for action, phrases in table.items():
            for phrase in phrases:
                for index, clause in enumerate(clauses):
                    if clause == phrase or clause.startswith(phrase + " "):
                        score = (0.9 if index == 0 else 0.8) + bonus
                        found[action] = max(found.get(action, 0.0), score)
                if re.search(rf"\b{re.escape(phrase)}\b", norm):
                    found[action] = max(found.get(action, 0.0), 0.5 + bonus)
    # the generic "ask" words only win when nothing more specific was said
    if len(found) > 1 and "ask" in found:
        found["ask"] = min(found["ask"], 0.45)
    order = list(ACTIONS)
    return sorted(
        found.items(), key=lambda item: (-item[1], order.index(item[0]) if item[0] in order else len(order), item[0])
    )


def _entities(text: str, mentioned_numbers: list[int]) -> dict:
    lower = text.lower()
    entities: dict = {}
    if mentioned_numbers:
        entities["agent_numbers"] = mentioned_numbers
    if emails := _EMAIL.findall(text):
        entities["emails"] = emails
    if urls := _URL.findall(text):
        entities["urls"] = urls
    if times := _TIME.findall(lower):
        entities["times"] = times
    if quoted := _QUOTED.findall(text):
        entities["quoted"] = quoted
    stripped = _AGENT_NUMBER.sub(" ", lower)
    stripped = _TIME.sub(" ", stripped)
    numbers = [float(n) if "." in n else int(n) for n in _NUMBER.findall(stripped)]
    if numbers:
        entities["numbers"] = numbers
    return entities


def _mentions_name(norm_text: str, name: str) -> bool:
    norm_name = _normalize(name)
    return bool(norm_name) and re.search(rf"(?:^| ){re.escape(norm_name)}(?: |$)", norm_text) is not None


def normalize_phrase(text: str) -> str:
    """How a training phrase is stored and matched: lower case, words only."""
    return _normalize(text)


def parse(
    text: str, agents: list[AgentRef], *, active_agent: int | None = None, trained: dict[str, list[str]] | None = None
) -> ParsedCommand:
    """``trained``: the organization's own phrases by intent (``voice/train``)."""
    text = (text or "").strip()
    norm = _normalize(text)
    numbers = [int(a or b) for a, b in _AGENT_NUMBER.findall(text.lower())]
    candidates = _actions(text, trained)
    action, confidence = candidates[0] if candidates else ("unknown", 0.0)
    parsed = ParsedCommand(
        action=action,
        confidence=confidence,
        entities=_entities(text, numbers),
        alternatives=[{"action": a, "entities": {}, "confidence": round(s, 3)} for a, s in candidates[1:4]],
    )
    parsed.global_command = bool(_GLOBAL.search(text.lower()))
    by_number = {a.agent_number: a for a in agents}
    target, how, score = None, "", 0.0
    for number in numbers:
        if number in by_number:
            target, how, score = by_number[number], "agent_number", 0.95
            break
    if target is None:  # the longest name mentioned wins ("Travel Planner Pro" over "Travel Planner")
        named = sorted((a for a in agents if _mentions_name(norm, a.name)), key=lambda a: -len(a.name))
        if named:
            target, how, score = named[0], "name", 0.9
    if target is None:
        by_role = [a for a in agents if a.role and _mentions_name(norm, a.role)]
        if by_role:
            target, how, score = by_role[0], "role", 0.7
    if target is None and active_agent is not None and active_agent in by_number and not parsed.global_command:
        target, how, score = by_number[active_agent], "context", 0.5
    parsed.target, parsed.routed_by, parsed.routing_confidence = target, how, score
    if target is not None:
        # other agents the text also fits, best first
        others = [
            a
            for a in agents
            if a is not target and (_mentions_name(norm, a.name) or (a.role and _mentions_name(norm, a.role)))
        ]
        parsed.fallback_agents = [a.agent_number for a in others][:5]
    return parsed


def response_text(parsed: ParsedCommand, transcript: str) -> tuple[str, list[str], bool]:
    """What to say back: text, suggestions, whether a follow-up is needed."""
    if not transcript.strip():
        return "I did not hear a command.", ["Try again, a little closer to the microphone."], True
    if not parsed.understood:
        return (
            "I did not understand that command.",
            [
                "Start with what to do, e.g. 'search …', 'run …', 'stop agent 2'.",
                "Name the agent: 'ask the travel planner to …'.",
            ],
            True,
        )
    verb = parsed.action.replace("_", " ")
    if parsed.global_command:
        return f"Running '{verb}' for all agents.", [], False
    if parsed.target is None:
        return (f"Which agent should {verb} this?", ["Say the agent's name or number, e.g. 'agent 2, …'."], True)
    return f"Routing '{verb}' to agent #{parsed.target.agent_number} {parsed.target.name}.", [], False
