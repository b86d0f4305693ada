"""The server's warm-up imports what the pages import, read from the pages themselves."""

from __future__ import annotations

import subprocess
import sys

from explorer.warm_up import page_modules
from tests.conftest import REPO


def test_the_modules_come_from_the_pages_imports(tmp_path):
    (tmp_path / "one.py").write_text("import json\nfrom explorer.run_watch import live_view\n")
    (tmp_path / "two.py").write_text("from explorer.attention_tabs import maps\nfrom . import nothing\n")
    assert page_modules(tmp_path) == [
        "json", "explorer.run_watch", "explorer.run_watch.live_view",
        "explorer.attention_tabs", "explorer.attention_tabs.maps",
    ]


def test_warming_imports_every_page_module_and_plotlys_traces():
    script = (
        "import sys\nfrom explorer.warm_up import page_modules, warm\nwarm()\n"
        "need = ['explorer.run_watch', 'explorer.attention_tabs.ablation', 'explorer.generate_stream', "
        "'explorer.home_picture', 'pandas', 'plotly.graph_objs._heatmap', 'plotly.graph_objs._bar']\n"
        "print(sorted(set(need) - set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
