"""How the web app draws messages, in headless Chromium against a real `hubbub serve`: the safe
Markdown subset (hostile input stays text), groups of messages from one sender, initials
avatars and the direction of right-to-left text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from support.webui import bodies, create_room, join_by_name, register, send, sent, shown_messages

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALLOWED_TAGS = {"P", "EM", "STRONG", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "A"}
ALLOWED_ATTRIBUTES = {"href", "target", "rel", "start"}

# Renders each text with markdown.js into a detached element and reports what was made.
RENDER = """async (texts) => {
    const { renderMarkdown } = await import("/static/markdown.js");
    return texts.map((text) => {
        const box = document.createElement("div");
        const started = performance.now();
        box.append(renderMarkdown(text));
        const elements = [...box.querySelectorAll("*")];
        return {
            ms: performance.now() - started,
            text: box.textContent,
            tags: [...new Set(elements.map((e) => e.tagName))],
            attributes: [...new Set(elements.flatMap((e) => e.getAttributeNames()))],
            links: [...box.querySelectorAll("a")].map((a) => ({
                href: a.getAttribute("href"), rel: a.rel, target: a.target, text: a.textContent,
            })),
            shape: shape(box),
        };
    });
    function shape(node) {
        return [...node.childNodes].map((child) => child.nodeType === Node.TEXT_NODE
            ? child.data
            : { [child.tagName.toLowerCase()]: shape(child) });
    }
}"""


async def render(page: Page, *texts: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(RENDER, list(texts))
    return result


def only_allowed(made: dict[str, Any]) -> None:
    assert set(made["tags"]) <= ALLOWED_TAGS, made
    assert set(made["attributes"]) <= ALLOWED_ATTRIBUTES, made
    for link in made["links"]:
        assert link["href"].split(":")[0] in ("http", "https", "mailto"), link
        assert link["rel"] == "noopener noreferrer nofollow" and link["target"] == "_blank"


IFRAME = " <iframe src=javascript:alert(1)>"


async def test_hostile_markdown_makes_only_the_allowed_elements_and_shows_the_characters(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    page = await open_page(srv.url)
    hostile = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](JavaScript:alert(1)) and [y]( javascript:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "[x](vbscript:msgbox(1)) [z](/relative) [w](//example.com)",
        "**unclosed and *also and `open and [text](",
        "**<b>bold</b> *<i>em</i>*** _<u>u</u>_",
        "```\n<script>alert(1)</script> **not bold** [x](https://example.com)\n```",
        "> <svg onload=alert(1)>\n> > **deep** <iframe src=javascript:alert(1)>",
        "- <a href=javascript:alert(1)>x</a>\n1. <style>*{}</style>",
    ]
    made = await render(page, *hostile)
    for text, result in zip(hostile, made, strict=True):
        only_allowed(result)
        for fragment in ("<script>", "<img", "<svg", "<iframe", "<a href", "<style>", "alert(1)"):
            assert text.count(fragment) == result["text"].count(fragment), (fragment, result)
    # Links to anything but http(s) and mailto are not links, and keep all their characters.
    for index in (2, 3, 4, 5):
        assert made[index]["links"] == [] and made[index]["text"] == hostile[index]
    assert made[0]["tags"] == ["P"] and made[1]["text"] == hostile[1]
    assert made[6]["text"] == hostile[6] and made[6]["tags"] == ["P"]  # nothing closed
    assert made[7]["shape"] == [
        {"p": [{"strong": ["<b>bold</b> ", {"em": ["<i>em</i>"]}]}, " ", {"em": ["<u>u</u>"]}]}
    ]
    code = "<script>alert(1)</script> **not bold** [x](https://example.com)"
    assert made[8]["shape"] == [{"pre": [{"code": [code]}]}]
    assert made[9]["shape"] == [
        {
            "blockquote": [
                {"p": ["<svg onload=alert(1)>"]},
                {"blockquote": [{"p": [{"strong": ["deep"]}, IFRAME]}]},
            ]
        }
    ]
    assert made[10]["shape"] == [
        {"ul": [{"li": ["<a href=javascript:alert(1)>x</a>"]}]},
        {"ol": [{"li": ["<style>*{}</style>"]}]},
    ]

    # A 4000-character body of markers and tags: still only allowed elements, quickly.
    long = ("**a *b _c `d [e](javascript:f) <script>g</script> https://example.com/h_ " * 60)[:4000]
    nested = "*_" * 2000
    for result in await render(page, long, nested, "`" * 4000, "[" * 2000 + "](" * 1000):
        only_allowed(result)
        assert result["ms"] < 500, result["ms"]
        assert len(result["text"]) <= 4000


async def test_markdown_marks_up_what_it_knows_and_leaves_ordinary_text_unchanged(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    page = await open_page(srv.url)
    ordinary = [
        "snake_case_name and 2*3*4 and a_b_c, a * b * c, 5 * 3",
        "file_name_v2 *nix and ** alone, _ alone and price: $5*2",
        "line one\nline two\n\nafter a blank line",
        "1.5 is a number, -1 too, >= and => are not quotes",
    ]
    for text, result in zip(ordinary, await render(page, *ordinary), strict=True):
        assert result["text"] == text and result["tags"] == ["P"], result

    marked = await render(
        page,
        "*em* _em_ **strong** `co*de*` and ``a ` b``",
        "see [the docs](https://example.com/a?b=1) or https://example.org/x_y. "
        "Mail [me](mailto:a@example.com)",
        "Intro:\n- one\n- *two*\n\n3. three\n4. four\n> quoted\nend",
    )
    assert marked[0]["shape"] == [
        {
            "p": [
                {"em": ["em"]},
                " ",
                {"em": ["em"]},
                " ",
                {"strong": ["strong"]},
                " ",
                {"code": ["co*de*"]},
                " and ",
                {"code": ["a ` b"]},
            ]
        }
    ]
    assert [(a["href"], a["text"]) for a in marked[1]["links"]] == [
        ("https://example.com/a?b=1", "the docs"),
        ("https://example.org/x_y", "https://example.org/x_y"),
        ("mailto:a@example.com", "me"),
    ]
    only_allowed(marked[1])
    assert marked[2]["shape"] == [
        {"p": ["Intro:"]},
        {"ul": [{"li": ["one"]}, {"li": [{"em": ["two"]}]}]},
        {"ol": [{"li": ["three"]}, {"li": ["four"]}]},
        {"blockquote": [{"p": ["quoted"]}]},
        {"p": ["end"]},
    ]
    assert (
        await page.evaluate(
            "async () => { const { renderMarkdown } = await import('/static/markdown.js');"
            " const box = document.createElement('div'); box.append(renderMarkdown('3. x'));"
            " return box.querySelector('ol').getAttribute('start'); }"
        )
        == "3"
    )


GROUPING = """async () => {
    const { continues } = await import("/static/view.js");
    const at = new Date(2026, 5, 1, 12, 0).getTime();
    const minute = 60000;
    const m = (from, ts) => ({ from, ts });
    const night = new Date(2026, 5, 1, 23, 58).getTime();
    return [
        continues(null, m("alice", at)),
        continues(m("alice", at), m("alice", at + 4 * minute)),
        continues(m("alice", at), m("alice", at + 5 * minute)),
        continues(m("alice", at), m("bob", at + minute)),
        continues(m("alice", night), m("alice", night + 3 * minute)),
    ];
}"""


async def test_groups_avatars_and_right_to_left_bodies_between_two_users(
    server_factory: Callable[..., Any], open_page: Any, screenshot_dir: Path
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    # Within five minutes and on the same day only (midnight ends a group).
    assert await alice.evaluate(GROUPING) == [False, True, False, False, False]
    await register(alice, "alice")
    await register(bob, "bob-ray")
    await create_room(alice, "design", topic="שלום: the header's topic finds its own direction")
    await join_by_name(bob, "design")
    await expect(bob.get_by_test_id("room-item-design")).to_have_attribute("aria-current", "page")

    conversation = [
        (alice, "Morning! Three things about the **new message view**:"),
        (alice, "- messages are grouped\n- avatars show *initials*\n- `code` and links work"),
        (alice, "Details: [the webapp docs](https://example.com/webapp) and https://example.org"),
        (
            bob,
            "> messages are grouped\nNice, and _quotes_ too.\n```\nhubbub serve --port 8080\n```",
        ),
        (bob, "שלום! مرحبا بالعالم"),
    ]
    for page, text in conversation:
        await send(page, text)
        await expect(sent(alice)).to_have_count(conversation.index((page, text)) + 1)
    await expect(sent(bob)).to_have_count(len(conversation))

    for page in (alice, bob):
        await page.get_by_test_id("messages").hover(position={"x": 5, "y": 5})
        shown = await shown_messages(page)
        assert [m["from"] for m in shown] == ["alice"] * 3 + ["bob-ray"] * 2
        assert all(m["state"] == "sent" for m in shown)
        messages = page.get_by_test_id("messages")
        # One header (name, avatar, time) per group: alice's three, then bob-ray's two.
        await expect(messages.get_by_test_id("message-from")).to_have_text(["alice", "bob-ray"])
        avatars = messages.get_by_test_id("avatar")
        await expect(avatars).to_have_text(["A", "BR"])
        for index in range(2):
            await expect(avatars.nth(index)).to_have_attribute("aria-hidden", "true")
        colours = await avatars.evaluate_all(
            "nodes => nodes.map(n => getComputedStyle(n).backgroundColor)"
        )
        assert colours[0] != colours[1] and "rgb(255, 255, 255)" not in colours
        await expect(messages.get_by_test_id("message-time")).to_have_count(5)
        # The later messages of a group show their time only on hover, with the full time.
        later = messages.locator("[data-testid=message].continued")
        await expect(later).to_have_count(3)
        later_time = later.first.get_by_test_id("message-time")
        await expect(later_time).to_be_hidden()
        title = await later_time.get_attribute("title")
        assert title and len(title) > len(await later_time.inner_text())
        await later.first.hover()
        await expect(later_time).to_be_visible()
        # ... or while one of their links has the keyboard focus.
        await page.get_by_test_id("room-title").hover()
        await expect(later_time).to_be_hidden()
        linked_time = later.nth(1).get_by_test_id("message-time")
        await expect(linked_time).to_be_hidden()
        await later.nth(1).locator("a").first.focus()
        await expect(linked_time).to_be_visible()

        await expect(messages.locator("strong")).to_have_text(["new message view"])
        await expect(messages.locator("li")).to_have_text(
            ["messages are grouped", "avatars show initials", "code and links work"]
        )
        await expect(messages.locator("pre")).to_have_text("hubbub serve --port 8080")
        await expect(messages.locator("blockquote")).to_have_text("messages are grouped")
        links = messages.locator("a")
        await expect(links).to_have_count(2)
        await expect(links.first).to_have_attribute("href", "https://example.com/webapp")
        # Right-to-left text finds its own direction, in the body and in the topic.
        directions = await bodies(page).evaluate_all("nodes => nodes.map(n => n.dir)")
        assert directions == ["auto"] * len(conversation)
        last = bodies(page).last
        assert await last.evaluate("n => n.matches(':dir(rtl)')")
        assert not await bodies(page).first.evaluate("n => n.matches(':dir(rtl)')")
        topic = page.get_by_test_id("room-topic")
        await expect(topic).to_have_attribute("dir", "auto")
        assert await topic.evaluate("n => n.matches(':dir(rtl)')")

    await bob.get_by_test_id("messages").hover(position={"x": 5, "y": 5})
    await bob.screenshot(path=screenshot_dir / "webapp-messages.png")
    await alice.reload()  # the same groups from history
    await expect(sent(alice)).to_have_count(len(conversation))
    await expect(alice.get_by_test_id("message-from")).to_have_text(["alice", "bob-ray"])
    await alice.locator("[data-testid=message].continued").nth(1).hover()
    await alice.screenshot(path=screenshot_dir / "webapp-messages-hover.png")
