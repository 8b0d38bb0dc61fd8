"""The private Panel/Bokeh parts opsux uses (all in opsux.ui.compat) are still there, the installed versions are
the ones compat was checked with, and the push machinery leaves no thread behind."""
from __future__ import annotations

import inspect, threading, time
from pathlib import Path

import bokeh
import panel as pn
from bokeh.document import Document

from opsux.ui import compat


def test_installed_versions_are_the_checked_ones():
    "Fails when Panel or Bokeh moved past compat.CHECKED: re-check the parts below, then widen the range."
    assert compat.unchecked() == [], f"re-check opsux.ui.compat for {compat.unchecked()}"


def test_private_parts_are_where_compat_expects_them():
    assert compat.SHARED_HTML, "pn.pane.HTML no longer escapes its object with html.escape: SharedHTML is off"
    assert "background" in inspect.getsource(pn.io.PeriodicCallback.__init__)
    bokehjs = (Path(bokeh.__file__).parent / "server/static/js/bokeh.js").read_text()
    for needle in ("this.token = token", "_notified_idle", "async reconnect()", 'event_name = "connection_lost"',
                   'event_name = "client_reconnected"', "document.all_roots.indexOf(model)"):
        assert needle in bokehjs, f"BokehJS changed: {needle!r} (see opsux/ui/client/connection_lost.js)"


def test_shared_html_sends_what_panel_would():
    for markup in ("<b>a & b</b>", '<a href="/x?a=1&b=2">"q"</a>', ""):
        ours = compat.SharedHTML(markup).get_root(Document()).text
        assert ours == pn.pane.HTML(markup).get_root(Document()).text


def test_no_thread_is_left_after_a_dashboard_and_its_sessions(tmp_path):
    "Push.stop() and ops.close() end every thread opsux started (watcher, health, rounds)."
    from opsux.store.ops import connect
    from opsux.ui.pages import DashboardApp, DashboardSession
    from opsux.rules.urls import OPERATIONS_PATH
    before = {t.ident for t in threading.enumerate()}
    ops = connect(f"sqlite:///{tmp_path}/threads.sqlite")
    tenant = ops.directory.add_tenant("Contoso")
    ada = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[tenant])
    app = DashboardApp(ops)
    s = DashboardSession(app, ada, OPERATIONS_PATH, {}, {}, None).load().attach(Document())
    ops.runs.enqueue(tenant, "inventory.sync", user=ada)
    assert [t for t in threading.enumerate() if t.name.startswith("opsux-")]     # they did run
    s.close(); app.close(); ops.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not left: break
        time.sleep(0.05)  # polling a condition with a deadline
    assert not left, f"threads left running: {left}"
