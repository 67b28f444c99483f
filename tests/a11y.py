"""The accessibility check of the browser tests, on a Playwright page:

- :func:`axe_problems`: axe-core (the copy shipped inside the ``axe-playwright-python`` wheel;
  nothing is downloaded) with the WCAG 2.0 and 2.1 level A and AA rules: every input labelled,
  AA contrast, names of links, buttons and images, landmarks, language, ...
- :func:`keyboard_problems`: the page is tabbed through with the keyboard, and every
  interactive element (links, buttons, form fields, ``summary``, anything with an ``onclick``,
  a ``tabindex`` or a role of a control, and anything the page's scripts gave a mouse handler)
  must have had the focus: nothing is reachable by mouse only.
- :func:`assert_accessible`: both, failing with a readable list of what is wrong where.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

#: axe-core's tags of the WCAG 2.0 and 2.1 success criteria of levels A and AA.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
_AXE = Axe()

#: Run before the page's own scripts (Playwright's init script, outside the page's CSP): marks
#: every element that a script gives a mouse handler, so that the keyboard check knows it.
MOUSE_HANDLERS = """(() => {
  const kinds = new Set(['click', 'dblclick', 'mousedown', 'mouseup', 'pointerdown',
                         'pointerup', 'contextmenu']);
  const add = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, listener, options) {
    if (kinds.has(type) && this instanceof Element && this !== document.body
        && this !== document.documentElement) {
      this.setAttribute('data-a11y-mouse', type);
    }
    return add.call(this, type, listener, options);
  };
})();"""

#: The interactive elements a person can see, each with a stable index (data-a11y-i).
_INTERACTIVE = """() => {
  const sel = 'a[href], area[href], button, input, select, textarea, summary, iframe,'
    + ' [onclick], [onmousedown], [onmouseup], [tabindex], [contenteditable=""],'
    + ' [contenteditable=true], [role=button], [role=link], [role=checkbox], [role=radio],'
    + ' [role=tab], [role=menuitem], [role=switch], [role=slider], [data-a11y-mouse]';
  const out = [];
  let i = 0;
  for (const el of document.querySelectorAll(sel)) {
    const st = getComputedStyle(el), box = el.getBoundingClientRect();
    if (el.disabled || el.type === 'hidden' || el.closest('[inert], [hidden]')
        || el.getAttribute('tabindex') === '-1' && !el.matches('[onclick], [data-a11y-mouse]')
        || st.visibility === 'hidden' || st.display === 'none'
        || (el.closest('details:not([open])')
            && el.closest('details:not([open]) > summary') === null)
        || (box.width === 0 && box.height === 0 && !el.matches('.skip, .sr-only'))) continue;
    el.setAttribute('data-a11y-i', String(i));
    const text = (el.getAttribute('aria-label') || el.textContent || el.value || el.name
                  || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
    out.push({i: i, tag: el.tagName.toLowerCase(), type: el.type || '', name: el.name || '',
              text: text, radio: el.type === 'radio' ? el.name : ''});
    i += 1;
  }
  window.__a11yFocused = new Set();
  document.addEventListener('focusin', e => {
    const el = e.target.closest ? e.target.closest('[data-a11y-i]') : null;
    if (el) { window.__a11yFocused.add(Number(el.getAttribute('data-a11y-i'))); }
  }, true);
  const now = document.activeElement && document.activeElement.closest('[data-a11y-i]');
  if (now) { window.__a11yFocused.add(Number(now.getAttribute('data-a11y-i'))); }
  return out;
}"""


def axe_problems(page: Any) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on ``page``: one line per rule and element."""
    result = _AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA},
                                     "resultTypes": ["violations"]})
    lines = []
    for v in result.response["violations"]:
        for node in v["nodes"]:
            why = "; ".join(c["message"] for c in node.get("any", []) + node.get("all", [])
                            + node.get("none", []))
            lines.append(f"{v['id']} ({v['impact']}): {v['help']}: "
                         f"{', '.join(map(str, node['target']))} {node['html'][:120]} — {why}")
    return lines


def keyboard_problems(page: Any) -> list[str]:
    """The interactive elements of ``page`` that Tab never reached (a radio group counts as
    reached when one of its buttons was: arrows move within it). Tab is pressed until every
    element had the focus or the focus came round to the top again (a date field takes a stop
    per part)."""
    elements = page.evaluate(_INTERACTIVE)
    wanted = {e["i"] for e in elements}
    here = "() => { const e = document.activeElement; const i = e && e.closest('[data-a11y-i]');"\
           " return i ? Number(i.getAttribute('data-a11y-i')) : -1; }"
    first, moved = None, False
    for _ in range(10 * len(elements) + 20):
        page.keyboard.press("Tab")
        now = page.evaluate(here)
        if first is None:
            first = now
        elif now != first:
            moved = True
        elif moved:  # round the page once
            break
        if wanted <= set(page.evaluate("() => [...window.__a11yFocused]")):
            break
    focused = set(page.evaluate("() => [...window.__a11yFocused]"))
    groups = {e["radio"] for e in elements if e["radio"] and e["i"] in focused}
    missed = [e for e in elements if e["i"] not in focused
              and not (e["radio"] and e["radio"] in groups)]
    return [f"not reachable by keyboard: <{e['tag']}{' type=' + e['type'] if e['type'] else ''}"
            f"{' name=' + e['name'] if e['name'] else ''}> {e['text']!r}" for e in missed]


def assert_accessible(page: Any, where: str) -> None:
    """Fail with every axe-core violation and every element the keyboard cannot reach."""
    problems = axe_problems(page) + keyboard_problems(page)
    assert not problems, (f"{where}: {len(problems)} accessibility problem(s):\n  "
                          + "\n  ".join(problems))
