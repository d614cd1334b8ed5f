"""The dashboard's stylesheet in a real headless Chromium: an answer with no spaces (a URL, the random tiny
model's bytes) wraps inside its box instead of running out of it. The page is the stream card's markup with
the real `app.css`, so no pipeline is needed."""

from __future__ import annotations

from pathlib import Path

import pytest

STATIC = Path(__file__).parents[2] / "pipeline" / "serve" / "static"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

PAGE = """<!doctype html><html><head><link rel="stylesheet" href="{css}"></head><body><main><section>
<article class="stream"><div class="body"><figure class="frame"></figure><div class="side">
<ul class="answers feed"><li><div class="q">Q: {question}</div><div class="a">{answer}</div></li></ul>
</div></div></article></section><aside></aside></main></body></html>"""

@pytest.mark.timeout(120)
def test_a_long_answer_without_spaces_wraps_inside_its_box(browser, tmp_path):
    page = tmp_path / "card.html"
    page.write_text(PAGE.format(css=(STATIC / "app.css").as_uri(), question="x" * 300, answer="\u00e9" * 2000))
    browser.get(page.as_uri())
    box = browser.execute_script("""
        const li = document.querySelector('.answers li'), a = li.querySelector('.a');
        return {li: li.getBoundingClientRect().width, scroll: li.scrollWidth, client: li.clientWidth,
                a: a.getBoundingClientRect().width, lines: a.getBoundingClientRect().height / 16,
                side: document.querySelector('.side').getBoundingClientRect().width};""")
    assert box["side"] > 100 and box["li"] <= box["side"] + 1, box  # the box itself stays in its column
    assert box["scroll"] <= box["client"] + 1, box  # nothing runs out of it...
    assert box["lines"] > 5, box  # ...because the 2000-character word wraps onto many lines
