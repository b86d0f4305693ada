"""The Attention page in a real browser: pick a model, type text, read the map, open every tab."""

import pytest
import torch
from playwright.sync_api import expect

from lm.checkpoint import load_checkpoint, save_checkpoint
from tests.browser.conftest import screenshot, wait_until_idle
from tests.checkpoints import make_checkpoint

TYPED = "Students type their own sentence, and the model reads their own sentence."
MODELS = ("attention-start", "attention-end")


@pytest.fixture(scope="module")
def models(app_home):
    """Two random checkpoints in the app's runs folder, their attention sharpened (query and key
    weights scaled up) so the maps show the crisp patterns of a trained model, not a grey fog."""
    folders = []
    for seed, name in enumerate(MODELS):
        folder = make_checkpoint(app_home / "runs" / name, seed=seed, n_layer=3, n_head=4, n_embd=64, block_size=64)
        checkpoint = load_checkpoint(folder)
        with torch.no_grad():
            for block in checkpoint.model.transformer.h:
                block.attn.c_attn.weight[: 2 * 64].mul_(12)
        save_checkpoint(folder, checkpoint.model, checkpoint.tokenizer, checkpoint.training)
        folders.append(folder)
    return folders


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_until_idle(page)


def open_attention(app_url, page, models) -> int:
    """Open the page, pick the first model, type the text; returns its number of tokens."""
    page.goto(f"{app_url}/attention")
    page.locator(".js-plotly-plot").first.wait_for()
    wait_until_idle(page)
    choose(page, "Model", MODELS[0])
    box = page.get_by_label("Text")
    box.fill(TYPED)
    box.press("Control+Enter")
    n_tokens = len(load_checkpoint(models[0]).tokenizer.encode(TYPED))
    page.get_by_text(f"{MODELS[0]} reads {n_tokens} tokens:").wait_for()
    wait_until_idle(page)
    return n_tokens


def test_typed_text_gets_an_attention_map(app_url, page, models):
    n_tokens = open_attention(app_url, page, models)
    expect(page.locator(".token-chips .tok")).to_have_count(n_tokens)
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    expect(page.locator(".js-plotly-plot .gtitle")).to_have_text([f"{MODELS[0]}: layer 0, head 0"])

    page.locator(".st-key-att_head").get_by_text("2", exact=True).click()
    wait_until_idle(page)
    expect(page.locator(".js-plotly-plot .gtitle")).to_have_text([f"{MODELS[0]}: layer 0, head 2"])
    cells = page.locator(".js-plotly-plot .nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.8, steps=5)
    expect(page.locator(".js-plotly-plot .hoverlayer")).to_contain_text("query #")
    screenshot(page, "attention-map")


def test_every_tab_renders(app_url, page, models):
    open_attention(app_url, page, models)
    for tab, check, name in (
        ("All heads", ".js-plotly-plot >> nth=1", "attention-all-heads"),
        ("Step through one head", '[data-testid="stDataFrame"]', "attention-step-through"),
        ("Head statistics", '[data-testid="stDataFrame"]', "attention-head-statistics"),
        ("Model view", ".block-diagram", "attention-model-view"),
    ):
        page.get_by_role("tab", name=tab).click()
        page.locator(check).first.wait_for()
        wait_until_idle(page)
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
        screenshot(page, name)
    assert "att_tab=Model+view" in page.url  # a refresh comes back to the same tab


def test_two_models_side_by_side(app_url, page, models):
    open_attention(app_url, page, models)
    page.get_by_text("Compare with a second model").click()
    wait_until_idle(page)
    choose(page, "Second model", MODELS[1])
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    expect(page.locator(".js-plotly-plot .gtitle")).to_have_text(
        [f"{MODELS[0]}: layer 0, head 0", f"{MODELS[1]}: layer 0, head 0"]
    )
    screenshot(page, "attention-compare")
