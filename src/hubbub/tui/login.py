"""The log-in screen: a username, a password, and "Log in" or "Register"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Static

# (username, password, register first) -> None on success, else what went wrong.
SignIn = Callable[[str, str, bool], Awaitable[str | None]]


class LoginScreen(Screen[bool]):
    """Asks for an account until `sign_in` accepts one, then dismisses itself with True."""

    BINDINGS = [("escape", "app.quit", "Quit")]

    def __init__(self, url: str, sign_in: SignIn, username: str = "", error: str = "") -> None:
        super().__init__()
        self.url = url
        self.sign_in = sign_in
        self.username = username
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Static(Text(f"hubbub  {self.url}", style="bold"), id="login-title")
            yield Input(value=self.username, placeholder="username", id="username")
            yield Input(placeholder="password", password=True, id="password")
            with Horizontal(id="login-buttons"):
                yield Button("Log in", variant="primary", id="login")
                yield Button("Register", id="register")
            yield Static(Text(self.error, style="bold red"), id="login-error")

    def on_mount(self) -> None:
        self.query_one("#password" if self.username else "#username", Input).focus()

    @on(Input.Submitted, "#username")
    def next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    async def submit_login(self) -> None:
        await self.submit(register=False)

    @on(Button.Pressed)
    async def pressed(self, event: Button.Pressed) -> None:
        await self.submit(register=event.button.id == "register")

    async def submit(self, register: bool) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        status = self.query_one("#login-error", Static)
        if not username or not password:
            status.update(Text("a username and a password, please", style="bold red"))
            return
        status.update(Text("registering…" if register else "logging in…", style="italic"))
        error = await self.sign_in(username, password, register)
        if error is None:
            self.dismiss(True)
        else:
            status.update(Text(error, style="bold red"))
