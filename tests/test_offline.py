"""The app on a machine with no network and nothing downloaded: the Tokenizer page falls back to
the tokenizers on disk, the Home page's lesson cards say what they need, and "Prepare this machine
for class" downloads it (from a local mirror of the reference files) or says clearly why not."""

from __future__ import annotations

import pytest
import requests
from streamlit.testing.v1 import AppTest

from explorer.lessons import shipped_lessons
from explorer.prepare import missing_for_lesson
from lm.checkpoint import load_checkpoint
from lm.prepare import class_files, prepare
from lm.tokenizer import tiktoken_file
from tests.checkpoints import make_checkpoint
from tests.conftest import REPO, open_page
from tests.offline import empty_caches, mirror  # noqa: F401 (fixtures)

LESSON_1, LESSON_2, LESSON_3, LESSON_4 = list(shipped_lessons().values())[:4]  # the four the tests below check


@pytest.fixture
def demo_model(tmp_path, monkeypatch):
    """A bundled model with its own BPE, as models/shakespeare-demo; runs and tokenizers folders empty."""
    monkeypatch.setenv("LM_BUNDLED_MODELS", str(tmp_path / "bundled"))
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LM_TOKENIZERS_DIR", str(tmp_path / "tokenizers"))
    return make_checkpoint(tmp_path / "bundled" / "demo")


@pytest.fixture
def asked(monkeypatch) -> list[str]:
    """Every URL requests is asked for; each fails as offline."""
    urls = []

    def offline(self, method, url, *args, **kwargs):
        urls.append(url)
        raise requests.ConnectionError("network disabled in tests")

    monkeypatch.setattr(requests.Session, "request", offline)
    return urls


def markdowns(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_tokenizer_page_offline_shows_the_demo_models_tokens_and_a_short_note(demo_model, asked):
    at = open_page("app_pages/tokenizer.py")
    assert at.multiselect(key="tok_chosen").value == ["Model: demo"], "the default falls back to what is on disk"
    text = at.text_area(key="tok_text").value
    count = len(load_checkpoint(demo_model).tokenizer.encode(text))
    assert any(m.startswith(f"**Model: demo** · {count} tokens") for m in markdowns(at))
    notes = [i.value for i in at.info]
    assert any(n.startswith("GPT-2 and GPT-4 need their tokenizer file") for n in notes)
    assert not any("TIKTOKEN_CACHE_DIR" in e.value for e in [*at.warning, *at.error, *at.info])
    assert at.button(key="tok_download").label.startswith("⬇ Download GPT-2's tokenizer (r50k_base) and GPT-4's")
    assert asked == [], "drawing the page tried the network"


def test_the_tokenizer_pages_button_downloads_what_a_lesson_chose(demo_model, mirror):
    at = AppTest.from_file(str(REPO / "app_pages" / "tokenizer.py"), default_timeout=60)
    at.query_params["tok_chosen"] = ["GPT-2 (r50k_base)", "GPT-4o (o200k_base)"]
    at.run()
    assert any("GPT-2 and GPT-4o need" in i.value for i in at.info)
    at.button(key="tok_download").click().run()
    assert not at.exception
    assert tiktoken_file("r50k_base").is_verified() and tiktoken_file("o200k_base").is_verified()
    assert not tiktoken_file("cl100k_base").is_present(), "only the chosen ones are fetched"
    shown = [m.split(" · ")[0] for m in markdowns(at) if " tokens · " in m]
    assert shown == ["**GPT-2 (r50k_base)**", "**GPT-4o (o200k_base)**"]


def test_lessons_say_what_they_miss():
    needs = {lesson.title: sorted(f.name for f in missing_for_lesson(lesson)) for lesson in (LESSON_1, LESSON_2, LESSON_3, LESSON_4)}
    assert needs == {
        LESSON_1.title: ["o200k_base", "r50k_base", "tinyshakespeare"],
        LESSON_2.title: ["tinyshakespeare"],
        LESSON_3.title: [],
        LESSON_4.title: [],
    }


def test_home_offline_warns_on_the_lesson_cards_and_lists_whats_missing(demo_model, asked):
    at = open_page("app.py")
    warnings = [w.value for w in at.warning]
    needing = [lesson for lesson in shipped_lessons().values() if missing_for_lesson(lesson)]
    assert len(needing) >= 3  # at least lessons 1 and 2 (Tiny Shakespeare) and 5 (the SMS Spam Collection)
    assert sum("This lesson needs" in w for w in warnings) == len(needing)  # one card each
    assert any("SMS Spam Collection" in w for w in warnings if "This lesson needs" in w)
    lesson_1 = next(w for w in warnings if "GPT-2" in w)
    assert all(title in lesson_1 for title in ("Tiny Shakespeare", "GPT-2's tokenizer", "GPT-4o's tokenizer"))
    assert "upload a text" in lesson_1
    assert all("#prepare-this-machine" in w for w in warnings if "This lesson needs" in w)
    table = next(d.value for d in at.dataframe if "on this machine" in d.value.columns)
    assert table["on this machine"].tolist() == ["✗ missing"] * len(class_files())
    assert asked == []

    at.button(key="prepare_all").click().run()
    assert len(asked) == 1, "offline, one failed request is enough to stop"
    error = at.error[0].value
    assert "Could not download everything" in error and "no network" in error
    assert all(str(f.path) in error for f in class_files().values())


def test_home_prepares_the_machine_and_the_warnings_go(demo_model, mirror):
    at = open_page("app.py")
    at.button(key="prepare_all").click().run()
    assert not at.exception
    assert any("This machine is ready" in s.value for s in at.success)
    assert not any("This lesson needs" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "on this machine" in d.value.columns)
    assert table["on this machine"].tolist() == ["✓"] * len(class_files())
    assert all(o.state == "present" for o in prepare(list(class_files().values())))
