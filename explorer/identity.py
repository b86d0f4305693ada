"""Who is using the app when a teacher shares it with a class (classroom mode), without
Streamlit: the settings, the people, the sign-in checks and the signed links.

Classroom mode is on when LM_CLASSROOM=1 (or `classroom = true` in .streamlit/secrets.toml).
It needs an access code for the students and a password for the teacher, from the
environment (LM_ACCESS_CODE, LM_TEACHER_PASSWORD) or the secrets file (access_code,
teacher_password); neither is ever in the repository. Without it the app is a local
single-user session: one person, who may do everything.

A student signs in with the class's access code, a name (their workspace's folder) and a
secret word they choose the first time: the word keeps a classmate who types the same name
out of that workspace. The page's address then carries a signed token (?who=name.signature),
so a refresh keeps the student signed in without cookies; the signature covers the word's
hash, so a word reset by the teacher ends the old links. The teacher's sign-in is never put
in the address: it would be on the projector for the class to read."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from explorer.paths import check_name
from lm.atomic import exclusive, write_json

IDENTITY_PARAM = "who"  # the URL parameter holding a student's signed token
OWNER_FILE = "owner.json"  # in a workspace: the salted hash of its owner's secret word
MIN_WORD = 4
HASH_ROUNDS = 50_000  # PBKDF2-SHA256: about 30 ms here; thirty sign-ins at once stay short
TRUE = ("1", "true", "yes", "on")


class SignInError(ValueError):
    """A sign-in refused; the message says why, and says nothing of other people's workspaces."""


class ClassroomConfigError(ValueError):
    """Classroom mode switched on without what it needs."""


@dataclass(frozen=True)
class Person:
    """role: local (a single-user session on this machine), teacher, student, or visitor
    (classroom mode, not signed in yet: owns nothing, may do nothing)."""

    role: str
    name: str = ""  # a student's workspace name

    @property
    def manages_all(self) -> bool:
        return self.role in ("local", "teacher")

    @property
    def is_student(self) -> bool:
        return self.role == "student"

    def describe(self) -> str:
        return {"local": "this machine's user", "teacher": "the teacher", "visitor": "not signed in"}.get(
            self.role, self.name)


LOCAL, TEACHER, VISITOR = Person("local"), Person("teacher"), Person("visitor")


@dataclass(frozen=True)
class ClassroomSettings:
    access_code: str
    teacher_password: str
    secret: bytes  # signs the students' links
    slots: int = 2  # training processes at once; the rest wait in line
    active_runs_per_student: int = 1  # training or waiting, per student
    runs_per_student: int = 10  # kept in a workspace


def load_settings(environ: Mapping[str, str], secrets_file: Mapping | None = None) -> ClassroomSettings | None:
    """The classroom settings, or None for a local single-user session. Environment first,
    then the secrets file."""
    stored = secrets_file or {}

    def setting(env: str, key: str, default: str = "") -> str:
        return str(environ.get(env) or stored.get(key) or default).strip()

    if setting("LM_CLASSROOM", "classroom").lower() not in TRUE:
        return None
    code, password = setting("LM_ACCESS_CODE", "access_code"), setting("LM_TEACHER_PASSWORD", "teacher_password")
    if not code or not password:
        raise ClassroomConfigError(
            "classroom mode needs an access code for the students and a password for the teacher: set "
            "LM_ACCESS_CODE and LM_TEACHER_PASSWORD, or access_code and teacher_password in .streamlit/secrets.toml")
    if code == password:
        raise ClassroomConfigError("the teacher password must differ from the students' access code")
    secret = setting("LM_CLASSROOM_SECRET", "classroom_secret") or f"{password}\0{code}"
    try:
        numbers = {key: int(setting(env, key.lower(), str(default))) for env, key, default in (
            ("LM_TRAINING_SLOTS", "training_slots", 2), ("LM_ACTIVE_RUNS_PER_STUDENT", "active_runs_per_student", 1),
            ("LM_RUNS_PER_STUDENT", "runs_per_student", 10))}
    except ValueError as exc:
        raise ClassroomConfigError(f"a classroom limit is not a whole number: {exc}") from None
    if min(numbers.values()) < 1:
        raise ClassroomConfigError("classroom limits (training slots, runs per student) must be at least 1")
    return ClassroomSettings(
        code, password, hashlib.sha256(secret.encode()).digest(), numbers["training_slots"],
        numbers["active_runs_per_student"], numbers["runs_per_student"])


def student_name(typed: str) -> str:
    """The workspace name for what a student typed: "Ada Lovelace" and "ada lovelace" are one person."""
    name = "-".join(typed.strip().lower().split())
    try:
        return check_name(name)
    except ValueError as exc:
        raise SignInError(f"that name cannot name a workspace: {exc}") from None


def same(typed: str, expected: str) -> bool:
    return hmac.compare_digest(typed.strip().encode(), expected.encode())


def sign_in_student(settings: ClassroomSettings, workspaces: Path, code: str, typed_name: str, word: str) -> Person:
    """Check the access code, then the name's secret word (a new name is claimed with it)."""
    if not same(code, settings.access_code):
        raise SignInError("that is not this class's access code: ask your teacher")
    name = student_name(typed_name)
    if len(word) < MIN_WORD:
        raise SignInError(f"choose a secret word of at least {MIN_WORD} characters (you need it to come back)")
    owner = workspaces / name / OWNER_FILE
    owner.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(owner):  # two students claiming one name at once: one claims it, the other is checked
        record = _read_owner(owner)
        if record is None:
            salt = secrets.token_hex(16)
            write_json(owner, {"salt": salt, "hash": _word_hash(word, salt)})
        elif not hmac.compare_digest(_word_hash(word, record["salt"]), record["hash"]):
            raise SignInError(
                f"the name {name!r} is taken and that is not its secret word: if it is yours, ask your teacher to "
                "reset it; if not, choose another name")
    return Person("student", name)


def sign_in_teacher(settings: ClassroomSettings, password: str) -> Person:
    if not same(password, settings.teacher_password):
        raise SignInError("that is not the teacher password")
    return TEACHER


def token(settings: ClassroomSettings, workspaces: Path, person: Person) -> str | None:
    """The student's signed token for the page's address (None for anyone else)."""
    if not person.is_student:
        return None
    record = _read_owner(workspaces / person.name / OWNER_FILE)
    return f"{person.name}.{_signature(settings, person.name, record)}" if record else None


def from_token(settings: ClassroomSettings, workspaces: Path, value: str) -> Person | None:
    """The student a token names, if its signature holds; None for anything else."""
    name, _, signature = value.partition(".")
    try:
        check_name(name)
    except ValueError:
        return None
    record = _read_owner(workspaces / name / OWNER_FILE)
    if record is None or not hmac.compare_digest(signature, _signature(settings, name, record)):
        return None
    return Person("student", name)


def reset_word(workspaces: Path, name: str) -> None:
    """The teacher frees a name's secret word: the next sign-in with that name claims it again."""
    (workspaces / check_name(name) / OWNER_FILE).unlink(missing_ok=True)


def _signature(settings: ClassroomSettings, name: str, record: dict) -> str:
    digest = hmac.new(settings.secret, f"student\0{name}\0{record['hash']}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def _word_hash(word: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", word.encode(), bytes.fromhex(salt), HASH_ROUNDS).hex()


def _read_owner(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("salt", "hash"))
    try:
        return record if ok and bytes.fromhex(record["salt"]) else None
    except ValueError:
        return None
