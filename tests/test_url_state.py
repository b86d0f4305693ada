"""Shareable links: a page opened with its settings in the URL shows exactly those settings,
every shareable widget is bound to the URL (so a change rewrites it: the browser test sees
that), malformed values fall back to the defaults, long texts stay out of links, and the
presenter view hides what it should."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from explorer import presenter
from explorer.lesson_widgets import DRAFT
from explorer.url_state import LEFT_OUT, MAX_TEXT_IN_LINK, link
from explorer.widgets import figure_html
from tests.checkpoints import make_checkpoint
from tests.conftest import REPO, open_page


def test_a_link_is_the_page_address_with_its_parameters():
    url = link("http://localhost:8501/generate", {"gen_temperature": "1.5", "tok_chosen": ["GPT-2 (r50k_base)", "A&B"],
                                                  "tok_text": "Кот = 猫?"})
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost:8501", "/generate")
    assert parse_qs(parts.query) == {
        "gen_temperature": ["1.5"], "tok_chosen": ["GPT-2 (r50k_base)", "A&B"], "tok_text": ["Кот = 猫?"],
    }
    assert link("http://h/tokenizer?old=1#x", {}) == "http://h/tokenizer"  # the old query string is replaced


def open_with(script: str, params: dict) -> AppTest:
    at = AppTest.from_file(str(REPO / script), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def widget_values(at: AppTest, keys) -> dict:
    return {key: at.session_state[key] for key in keys}


def bound_keys(at: AppTest) -> set[str]:
    """Widgets whose value the browser writes into the URL when it changes."""
    found = set()

    def walk(node):
        proto = getattr(node, "proto", None)
        if getattr(proto, "query_param_key", ""):
            found.add(proto.query_param_key)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


@pytest.fixture
def two_models(app_dirs):
    for name in ("alpha", "beta"):
        make_checkpoint(app_dirs / "runs" / name, n_layer=2, n_head=2)
    return app_dirs


def test_tokenizer_page_opens_with_the_linked_settings(app_dirs):
    params = {
        "tok_text": "Кот спит. The cat sleeps.",
        "tok_chosen": ["GPT-4o (o200k_base)", "GPT-2 (r50k_base)"],
        "tok_show_ids": "true",
        "bpe_source": "Paste text",
        "bpe_vocab": "300",
        "tok_tab": "Train your own BPE",
        "bpe_pattern": "GPT-2 regex",  # a selectbox is linked by the label it shows
    }
    at = open_with("app_pages/tokenizer.py", params)
    assert widget_values(at, params) == {
        "tok_text": "Кот спит. The cat sleeps.", "tok_chosen": ["GPT-4o (o200k_base)", "GPT-2 (r50k_base)"],
        "tok_show_ids": True, "bpe_source": "Paste text", "bpe_vocab": 300, "bpe_pattern": "gpt2",
        "tok_tab": "Train your own BPE",
    }
    shown = [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**")]
    assert shown == ["GPT-4o (o200k_base)", "GPT-2 (r50k_base)"]  # the page compares the linked tokenizers
    assert set(params) - {"tok_tab"} <= bound_keys(at)  # tabs are bound too, in a block not a widget


def test_generate_page_opens_with_the_linked_settings(two_models):
    params = {
        "gen_model": "beta", "gen_prompt": "To be", "gen_temperature": "1.5", "gen_top_k": "0", "gen_top_p": "0.9",
        "gen_max_new": "7", "gen_seed": "42", "gen_stepwise": "true", "score_text": "Hello there", "gen_tab": "Score a text",
    }
    at = open_with("app_pages/generate.py", params)
    assert widget_values(at, params) == {
        "gen_model": "beta", "gen_prompt": "To be", "gen_temperature": 1.5, "gen_top_k": 0, "gen_top_p": 0.9,
        "gen_max_new": 7, "gen_seed": 42, "gen_stepwise": True, "score_text": "Hello there", "gen_tab": "Score a text",
    }
    assert set(params) - {"gen_tab"} <= bound_keys(at)


def test_the_model_param_from_other_pages_still_preselects(two_models):
    at = open_with("app_pages/generate.py", {"model": "beta"})
    assert at.selectbox(key="gen_model").value == "beta"


def test_attention_page_opens_with_the_linked_settings(two_models):
    params = {
        "att_model": "beta", "att_compare": "true", "att_model_b": "alpha", "att_text": "abc abc abc",
        "att_layer": "1", "att_head": "1", "att_tab": "Head detectors", "att_detector": "induction",
    }
    at = open_with("app_pages/attention.py", params)
    values = widget_values(at, [k for k in params if k != "att_tab"])
    assert values == {
        "att_model": "beta", "att_compare": True, "att_model_b": "alpha", "att_text": "abc abc abc",
        "att_layer": 1, "att_head": 1, "att_detector": "induction",
    }
    assert at.session_state["att_tab"] == "Head detectors"
    assert set(params) - {"att_tab"} <= bound_keys(at)


def test_home_page_opens_with_the_linked_settings(app_dirs):
    at = open_with("app.py", {"gpt2_source": "A file or folder on this machine"})
    assert at.radio(key="gpt2_source").value == "A file or folder on this machine"
    assert at.text_input(key="gpt2_path")  # the form for a local file is shown


def test_malformed_values_fall_back_to_the_defaults(two_models):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/generate.py")
    for key, value in {
        "gen_model": "no-such-model", "gen_temperature": "hot", "gen_top_k": "-5", "gen_top_p": "7",
        "gen_stepwise": "maybe", "gen_max_new": "", "gen_seed": "1e999",  # crashes Streamlit itself: app.py drops it
    }.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="gen_model").value == "alpha"
    assert at.slider(key="gen_temperature").value == 0.8
    assert at.number_input(key="gen_top_k").value == 50
    assert at.slider(key="gen_top_p").value == 1.0
    assert at.toggle(key="gen_stepwise").value is False
    assert at.number_input(key="gen_max_new").value == 100
    assert at.number_input(key="gen_seed").value == 0


def test_a_long_text_stays_out_of_the_link(app_dirs):
    at = open_page("app_pages/tokenizer.py")
    at.text_area(key="tok_text").set_value("x" * (MAX_TEXT_IN_LINK + 1)).run()
    assert "tok_text" not in bound_keys(at)
    assert at.session_state[LEFT_OUT] == ["the text to tokenize"]
    at.text_area(key="tok_text").set_value("short again").run()
    assert "tok_text" in bound_keys(at)


def container_key(at: AppTest, widget_key: str) -> str | None:
    """The key of the innermost keyed container around a widget (Streamlit ends a block's id with it)."""

    def walk(node, keys):
        block_id = getattr(getattr(node, "proto", None), "id", "")
        if block_id and "-" in block_id and getattr(node, "type", None) != "number_input":
            keys = keys + [block_id]
        if getattr(node, "key", None) == widget_key:
            return keys
        for child in getattr(node, "children", {}).values():
            found = walk(child, keys)
            if found is not None:
                return found
        return None

    ids = walk(at._tree, []) or []
    for block_id in reversed(ids):
        for prefix in (presenter.ADVANCED_PREFIX, presenter.CONTROL_PREFIX):
            if prefix in block_id:
                return block_id[block_id.index(prefix):]
    return None


def test_presenter_view_styles_the_app_and_hides_advanced_controls(two_models):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params["presenter"] = "true"
    at.run()
    at.switch_page("app_pages/generate.py")
    at.query_params["hide"] = "gen_temperature,bad}name"
    at.run()
    assert not at.exception, at.exception
    assert at.toggle(key="presenter").value is True
    style = next(h.value for h in at.html if h.value.startswith("<style>"))
    assert f"font-size: {presenter.FONT_SIZE}px" in style
    assert f'[class*="st-key-{presenter.ADVANCED_PREFIX}"] {{ display: none' in style
    assert ".st-key-control-gen_temperature { display: none" in style
    assert "bad}name" not in style  # ?hide= goes into CSS: only widget keys pass
    # the marked controls sit in the containers the style hides; the others do not
    assert container_key(at, "gen_top_k") == "advanced-gen_top_k"
    assert container_key(at, "gen_top_p") == "advanced-gen_top_p"
    assert container_key(at, "gen_temperature") == "control-gen_temperature"
    assert container_key(at, "gen_prompt") is None
    # hidden, not removed: the controls still hold their values
    assert at.slider(key="gen_temperature").value == 0.8 and at.number_input(key="gen_top_k").value == 50


def test_without_presenter_view_nothing_is_hidden(app_dirs):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    styles = [h.value for h in at.html if h.value.startswith("<style>")]
    assert styles and not [style for style in styles if "display: none" in style]
    assert "display: none" not in presenter.css(False, []) and "font-size" not in presenter.css(False, [])


def test_presenter_charts_are_restyled_on_a_copy():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], mode="lines"))
    big = presenter.restyle(fig)
    assert big.data[0].line.width == presenter.LINE_WIDTH and big.layout.font.size == presenter.CHART_FONT["size"]
    assert fig.data[0].line.width is None and fig.layout.font.size is None  # the original is untouched


def test_the_html_export_is_a_standalone_page_with_the_figure():
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["alpha", "beta"], y=[0.25, 0.75], name="probability"), layout_title_text="Next token")
    page = figure_html(fig)
    assert page.lower().startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: the file opens offline
    call = page[page.index("Plotly.newPlot("):]
    assert '"x":["alpha","beta"]' in call and '"y":[0.25,0.75]' in call and '"text":"Next token"' in call


def folding_page():
    """Two settings in a section that folds away, as the Train page's form does when runs exist."""
    import streamlit as st

    from explorer.url_state import BIND, page_params

    if st.toggle("Show the form", value=True, key="show"):
        st.number_input("Steps", value=10, key="steps", bind=BIND)
        st.text_input("Name", key="name", bind=BIND)
    st.session_state["shared"] = page_params("Folding")


def test_a_folded_setting_stays_in_the_link_while_the_session_holds_it():
    at = AppTest.from_function(folding_page, default_timeout=60)
    at.query_params.update({"steps": "12", "name": "mine", "run": "old"})
    at.run()
    assert at.session_state["shared"] == {"steps": "12", "name": "mine", "run": "old"}
    at.toggle(key="show").set_value(False).run()
    del at.query_params["run"]  # a parameter no widget holds goes with the address
    at.run()
    assert not at.exception, at.exception
    assert "steps" not in at.query_params  # Streamlit dropped the folded widget's parameter ...
    assert at.session_state["shared"] == {"steps": "12", "name": "mine"}  # ... the link keeps it
    at.session_state["name"] = ""  # put back to its default while folded: out of the link
    at.run()
    assert at.session_state["shared"] == {"steps": "12"}
    at.toggle(key="show").set_value(True).run()
    assert at.number_input(key="steps").value == 12


def folding_text_page():
    import streamlit as st

    from explorer.url_state import bind_text, page_params

    if st.toggle("Show the form", value=True, key="show"):
        st.text_area("Text", key="text", bind=bind_text("text", "the text"))
    st.session_state["shared"] = page_params("Folding")


def test_a_text_grown_too_long_for_a_link_stays_out_of_it_once_folded():
    at = AppTest.from_function(folding_text_page, default_timeout=60)
    at.query_params["text"] = "short"
    at.run()
    assert at.session_state["shared"] == {"text": "short"}
    at.text_area(key="text").input("x" * (MAX_TEXT_IN_LINK + 1)).run()
    at.toggle(key="show").set_value(False).run()
    assert not at.exception, at.exception
    assert at.session_state["shared"] == {}  # not the long text, nor the short one the link had before


def copied_link(at: AppTest) -> str:
    return next(code.value for code in at.sidebar.code)


def test_the_train_form_folded_keeps_its_settings_in_the_link_and_the_lesson(app_dirs):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/train.py")
    at.query_params.update({"train_max_steps": "123", "hide": "train_seed"})
    at.run()
    assert at.number_input(key="train_max_steps").value == 123  # no run yet: the form is open
    at.session_state["train_new_run"] = False  # the teacher folds it
    at.run()
    at.run()
    assert not at.exception, at.exception
    assert not [w for w in at.number_input if w.key == "train_max_steps"]  # folded: not drawn
    assert "train_max_steps" not in at.query_params
    assert parse_qs(urlsplit(copied_link(at)).query)["train_max_steps"] == ["123"]
    assert {"seed", "lr"} <= set(at.multiselect(key="lesson_hide").options)  # its controls can still be hidden
    assert at.multiselect(key="lesson_hide").value == ["train_seed"]
    at.button(key="lesson_add").click().run()
    assert not at.exception, at.exception
    step = at.session_state[DRAFT][-1]
    assert step.params["train_max_steps"] == "123" and step.hide == ("train_seed",)


def test_another_pages_settings_stay_out_of_the_link(two_models):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/generate.py")
    at.query_params["gen_temperature"] = "1.5"
    at.run()
    assert "gen_temperature=1.5" in copied_link(at)
    at.switch_page("app_pages/tokenizer.py").run()
    assert not at.exception, at.exception
    assert at.session_state["gen_temperature"] == 1.5  # the session keeps it for Generate ...
    assert "gen_" not in copied_link(at)  # ... and the Tokenizer page's link leaves it out
