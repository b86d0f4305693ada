"""The step-through's architecture parts against the model: RoPE's before and after (the
same token has the same query before the turn wherever it stands; the score depends on the
distance only), the banded mask of a sliding window as the model's own, GQA's shared heads,
and the tab drawing them for a model that has them."""

from __future__ import annotations

import numpy as np
import torch

from explorer.architecture_steps import kv_explanation, kv_groups_html, rope_figure, rope_rotation
from explorer.attention_view import run_layer
from lm.inspect import forward_pass
from lm.rope import rotate, rotation
from tests.checkpoints import make_checkpoint, sharpen_attention, tiny_gpt
from tests.test_attention_tabs import render

ROPE = dict(position="rope", n_head=4, n_embd=32, n_kv_head=2)


class Letters:
    """One token per letter, labelled as itself."""

    vocab_size = 8

    def token_bytes(self, i: int) -> bytes:
        return "abcdefgh"[i].encode()


def test_rope_before_and_after_for_the_chosen_tokens():
    model = sharpen_attention(tiny_gpt(8, **ROPE), 3.0)
    ids = [1, 0, 1, 0, 1]  # b a b a b: the same token at several positions
    run = run_layer(model, Letters(), ids, 0)
    one = rope_rotation(run, model.config, 0, query=1, key=0)
    three = rope_rotation(run, model.config, 0, query=3, key=2)
    np.testing.assert_allclose(one.q_before, three.q_before, atol=1e-5)  # layer 0: the token alone, before the turn
    assert not np.allclose(one.q_after, three.q_after, atol=1e-3)  # turned by different angles
    np.testing.assert_allclose(one.score_after, three.score_after, atol=1e-5)  # one token apart in both
    np.testing.assert_allclose(one.score_after, run.scores[0, 1, 0], atol=1e-5)  # the model's own score
    cos, sin = rotation(torch.tensor([3]), model.config.rotary_dims, model.config.rope_base)
    np.testing.assert_allclose(rotate(torch.from_numpy(three.q_before)[None], cos, sin)[0].numpy(), three.q_after, atol=1e-5)
    figure = rope_figure(one, "b", "a")
    assert len(figure.data) == 4 * min(4, model.config.rotary_dims // 2)
    assert list(figure.data[1].x) == [0, float(one.q_after[0])]  # pair 0, q after: dims 0 and half


def test_the_banded_mask_is_the_models_own():
    model = tiny_gpt(8, window=3, window_layers=[1])
    ids = [1, 2, 3, 4, 5, 6]
    layers = [run_layer(model, Letters(), ids, layer) for layer in (0, 1)]
    own = forward_pass(model, ids).attention.masked.numpy()  # [layers, heads, T, T]
    for layer in (0, 1):
        np.testing.assert_array_equal(np.isinf(layers[layer].masked(0)), np.isinf(own[layer, 0]))
    assert np.isinf(layers[1].masked(0)[5, 2]) and not np.isinf(layers[0].masked(0)[5, 2])  # only layer 1 has the band


def test_kv_groups_drawn_and_named():
    page = kv_groups_html(6, 2, head=4)
    assert page.count("q head") == 6 and page.count("3px solid") == 1 and "k, v head 1" in page
    assert "head 4 scores its own queries against key/value head 1, the same keys and values as query heads 3, 5" \
        in kv_explanation(6, 2, 4)


def test_the_tab_shows_rope_gqa_and_the_window(tmp_path):
    folder = make_checkpoint(tmp_path / "modern", **ROPE, window=4)
    at = render([folder], "step_through.render_step_through", head=3)
    text = "\n".join(m.value for m in at.markdown)
    assert "RoPE: positions as rotations" in text and "sliding window of 4" in text
    assert "head 3 scores its own queries against key/value head 1" in text
    assert any("kv-groups" in h.proto.body for h in at.get("html"))
    T = len(at.select_slider(key="att_query").options)
    assert at.select_slider(key=f"att_rope_key_{T - 1}").options[-1].startswith(f"#{T - 1}")
    plain = render([make_checkpoint(tmp_path / "gpt2")], "step_through.render_step_through")
    assert "RoPE" not in "\n".join(m.value for m in plain.markdown) and not plain.get("html")
