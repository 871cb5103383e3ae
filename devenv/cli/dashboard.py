"""`devenv dashboard`: the click layer of the live page (the server is devenv/dashboard/)."""

from __future__ import annotations

import contextlib
import json

import click

from .common import err, make_context


def run_dashboard(ctx: click.Context, port: int | None, open_browser: bool,
                  as_json: bool) -> None:
    """Serve until Ctrl-C; print the URL (with its token) as soon as the page answers."""
    from ..dashboard import Served, serve

    flags = {"DEVENV_DASHBOARD_PORT": str(port)} if port is not None else {}
    context = make_context(ctx, flags)

    def ready(served: Served) -> None:
        if as_json:
            click.echo(json.dumps({**served.as_data(), "url": served.url}))
        else:
            click.echo(f"dashboard of {served.project}: {served.url}")
            err("the token in the URL is the key: share it with no one; Ctrl-C stops")
        if open_browser:
            import threading

            # In a thread: a browser command that stays in the foreground (BROWSER=...)
            # must not hold up the server the page is about to ask.
            threading.Thread(target=_open_browser, args=(served.open_url,), daemon=True,
                             name="open-browser").start()

    with contextlib.suppress(KeyboardInterrupt):
        # returns on SIGTERM or SIGHUP
        serve(context, ready, features=_features(), open_page=open_browser)
    err("dashboard stopped")


def _open_browser(open_url: str) -> None:
    """The browser's command line shows in every local user's process list: it gets the
    path of a page of the user's own that leads to the tokened URL, never the URL."""
    import webbrowser

    if not webbrowser.open(open_url):
        err("no browser found to open; copy the URL above")


def _features() -> dict[str, bool]:
    """What the page offers."""
    return {"restart": True, "snapshots": True}


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Wanted port (DEVENV_DASHBOARD_PORT, default 7780); moved if taken.")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the page in the browser (handed a private file that leads to the "
              "URL, so the token is never on a command line).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the URL as one JSON line (schema devenv.dashboard.url/1).")
@click.pass_context
def dashboard(ctx: click.Context, port: int | None, open_browser: bool,
              as_json: bool) -> None:
    """Serve a live page of the stack on 127.0.0.1 until Ctrl-C: services with state,
    health and URLs, the port story, a graph of what needs what, logs, start-up timing,
    CPU and memory, restart buttons, the data snapshots with snapshot and restore
    buttons. The URL carries a random token; JSON of the same data is under /api/
    (schemas devenv.dashboard/1 ...).

    \b
    Example:
      devenv dashboard --open
      devenv up --dashboard       # start the stack, then the page
    """
    run_dashboard(ctx, port, open_browser, as_json)
