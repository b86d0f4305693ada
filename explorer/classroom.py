"""Classroom mode's sign-in (explorer.identity has the rules, explorer.workspace the rights):
app.py calls `gate()` before any page, which lets a signed-in person through and shows
everyone else the sign-in form instead of the page they asked for."""

from __future__ import annotations

import time

import streamlit as st

from explorer import identity, workspace
from explorer.identity import IDENTITY_PARAM, LOCAL, Person, SignInError
from explorer.paths import workspaces_root
from explorer.plain_text import plain

REFUSAL_DELAY_S = 1.0  # a wrong code or password costs a second: guessing one is slow


def gate() -> Person:
    """The person this page is for; stops the page at the sign-in form until someone signs in."""
    try:
        settings = workspace.settings()
    except identity.ClassroomConfigError as exc:
        st.error(f"The app cannot start in classroom mode: {exc}.", icon="⛔")
        st.stop()
    if settings is None:
        return LOCAL
    person = workspace.current_person()
    if not person.manages_all and not person.is_student:
        person = identity.from_token(settings, workspaces_root(), st.query_params.get(IDENTITY_PARAM, "")) or person
        if person.is_student:
            workspace.sign_in(person)
    if person.is_student:
        st.query_params[IDENTITY_PARAM] = identity.token(settings, workspaces_root(), person) or ""
        return person
    if person.manages_all:
        return person
    sign_in_form(settings)
    st.stop()


def sign_in_form(settings: identity.ClassroomSettings) -> None:
    st.title("🔬 LLM Explorer")
    st.write("This app is shared with a class. Sign in to get your own workspace: your runs and tokenizers stay yours.")
    student, teacher = st.tabs(["🎒 Student", "🧑‍🏫 Teacher"])
    with student, st.form("sign_in_student"):
        code = st.text_input("The class's access code", type="password", key="sign_in_code")
        name = st.text_input("Your name", max_chars=40, key="sign_in_name", placeholder="ada")
        word = st.text_input(
            "A secret word", type="password", key="sign_in_word",
            help="Choose one the first time you sign in with this name; it gets you back into your workspace "
            "from another tab or computer, and keeps a classmate who types your name out of it.")
        if st.form_submit_button("Sign in", type="primary"):
            attempt(lambda: identity.sign_in_student(settings, workspaces_root(), code, name, word))
    with teacher, st.form("sign_in_teacher"):
        password = st.text_input("Teacher password", type="password", key="sign_in_password")
        st.caption("You sign in again after a refresh: the teacher's sign-in never goes into the address, "
                   "which is on the projector.")
        if st.form_submit_button("Sign in as the teacher"):
            attempt(lambda: identity.sign_in_teacher(settings, password))


def attempt(check) -> None:
    try:
        person = check()
    except SignInError as exc:
        time.sleep(REFUSAL_DELAY_S)
        st.error(plain(exc), icon="🔒")
        return
    workspace.sign_in(person)
    for key in ("sign_in_code", "sign_in_word", "sign_in_password"):
        st.session_state.pop(key, None)
    st.rerun()


def badge() -> None:
    """Who is signed in, and Sign out (in the sidebar, classroom mode only)."""
    person = workspace.current_person()
    if person.role not in ("teacher", "student"):
        return
    who = "🧑‍🏫 the teacher: you see and manage every run" if person.manages_all else f"🎒 {person.name}"
    st.sidebar.caption(f"Signed in as {who}")
    if st.sidebar.button("Sign out", key="sign_out"):
        workspace.sign_out()
        st.query_params.pop(IDENTITY_PARAM, None)
        st.rerun()
