"""``App.showing``: while a live display (progress bar, dashboard) is drawn, stderr lines go through it; it
is entered before the block and left after it, whatever the block does."""

from __future__ import annotations

import io

import pytest

from dcmnet_cli.cli.app import App


class Display:
    def __init__(self, suppress: bool = False) -> None:
        self.suppress = suppress
        self.calls: list[str] = []
        self.printed: list[str] = []
        self.left_with: type[BaseException] | None = None

    def __enter__(self) -> "Display":
        self.calls.append("enter")
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        self.calls.append("exit")
        self.left_with = kind
        return self.suppress

    def print(self, text: str, style: str | None = None) -> None:
        self.printed.append(text)


def make_app() -> tuple[App, io.StringIO]:
    err = io.StringIO()
    return App(err=err, out=io.StringIO(), color=False), err


def test_lines_go_through_the_display_only_while_it_shows() -> None:
    app, err = make_app()
    display = Display()
    app.info("before")
    with app.showing(display):
        assert display.calls == ["enter"]
        app.info("during")
        app.error("failed")
    app.info("after")
    assert display.calls == ["enter", "exit"]
    assert display.printed == ["during", "dcmnet: error: failed"]
    assert err.getvalue() == "before\nafter\n"


def test_no_display_is_a_plain_block() -> None:
    app, err = make_app()
    with app.showing(None):
        app.info("plain")
    assert err.getvalue() == "plain\n"


def test_an_error_in_the_block_leaves_the_display_and_propagates() -> None:
    app, err = make_app()
    display = Display()
    with pytest.raises(KeyError):
        with app.showing(display):
            raise KeyError("boom")
    assert display.calls == ["enter", "exit"] and display.left_with is KeyError
    app.info("after")
    assert err.getvalue() == "after\n" and display.printed == []


def test_a_display_that_suppresses_the_error_ends_the_block_quietly() -> None:
    app, _err = make_app()
    display = Display(suppress=True)
    with app.showing(display):
        raise KeyError("swallowed by the display")
    assert display.left_with is KeyError
