// DOM building without HTML strings: every text from the network goes in as textContent.

import { avatar } from "./avatar.js";
import { renderMarkdown } from "./markdown.js";
import { state as app } from "./state.js";

/** Find the element with this data-testid. */
export function $(testid, root = document) {
  return root.querySelector(`[data-testid="${testid}"]`);
}

/** Create an element: el("li", {testid: "x", className: "y"}, child, "text", ...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "testid") node.dataset.testid = value;
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  year: "numeric",
  month: "long",
  day: "numeric",
});

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ms) {
  const today = new Date();
  if (dayKey(ms) === dayKey(today.getTime())) return "Today";
  if (dayKey(ms) === dayKey(today.getTime() - 86400000)) return "Yesterday";
  return dayFormat.format(new Date(ms));
}

/**
 * One message: avatar, sender, time, body. `pending` ones are ours, waiting for their ack.
 * A `continued` one follows another from the same sender shortly before: it shows only its
 * body (its sender for screen readers only), and its time in the gutter on hover or focus
 * (the full time in its title).
 */
export function messageNode(message, { mine, pending = false, failed = false, continued = false }) {
  const when = message.ts ? new Date(message.ts) : null;
  const time = when
    ? el("time", {
        testid: "message-time",
        datetime: when.toISOString(),
        title: when.toLocaleString(),
        text: timeFormat.format(when),
      })
    : null;
  const state =
    pending || failed
      ? el("span", {
          className: "state",
          testid: "message-state",
          text: failed ? "not sent" : "sending…",
        })
      : null;
  const body = el("div", { className: "body", testid: "message-body", dir: "auto" });
  body.append(renderMarkdown(message.body));
  return el(
    "article",
    {
      testid: "message",
      className: [
        "message",
        continued ? "continued" : "first",
        mine && "mine",
        pending && "pending",
        failed && "failed",
      ]
        .filter(Boolean)
        .join(" "),
      dataset: {
        seq: message.seq ? String(message.seq) : "",
        id: message.id,
        state: failed ? "failed" : pending ? "pending" : "sent",
        from: message.from,
      },
    },
    continued ? el("div", { className: "gutter" }, time) : avatar(message.from),
    el(
      "div",
      { className: "content" },
      continued
        ? el("span", { className: "sr-only", text: message.from }) // read out, not shown
        : el(
            "header",
            { className: "meta" },
            el("span", { className: "from", testid: "message-from", text: message.from }),
            time,
            state,
          ),
      body,
      continued ? state : null,
      failed ? refusal(message.id) : null,
    ),
  );
}

/** Why the server refused one of our messages, and a button that throws it away. */
function refusal(id) {
  const pending = app.outbox.get(id);
  return el(
    "div",
    { className: "refusal" },
    el("span", { className: "reason", testid: "message-reason", text: pending?.reason || "" }),
    el("button", {
      type: "button",
      className: "small secondary",
      testid: "message-discard",
      text: "Discard",
      dataset: { discard: id },
    }),
  );
}

const GROUP_MS = 5 * 60 * 1000;

/** Whether `message` continues `previous`: same sender, same day, within five minutes. */
export function continues(previous, message) {
  if (!previous || previous.from !== message.from) return false;
  const at = message.ts || Date.now();
  const before = previous.ts || Date.now();
  return dayKey(at) === dayKey(before) && at - before >= 0 && at - before < GROUP_MS;
}

export function daySeparator(ms) {
  return el(
    "div",
    { className: "day", testid: "day-separator", role: "separator" },
    el("span", { text: dayLabel(ms) }),
  );
}

/** "alice is typing…", "alice and bob are typing…", "several people are typing…". */
export function typingText(users) {
  if (users.length === 0) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return "several people are typing…";
}

const ERROR_LABELS = {
  not_found: "Not found",
  forbidden: "Not allowed",
  unauthorized: "Not logged in",
  conflict: "Already taken",
  bad_request: "Invalid",
  rate_limited: "Slow down",
  too_large: "Too long",
  unavailable: "Server busy",
  network: "Offline",
  not_joined: "Not joined",
};

/** A clear one-line message for an error from the server. */
export function errorText(error) {
  const label = ERROR_LABELS[error.code] || "Error";
  return `${label}: ${error.message}`;
}

// The error banner: one line, until dismissed, replaced, the next attempt or another room.

export function showError(error) {
  const known = error instanceof Error && error.code;
  showBanner(known ? errorText(error) : String(error.message || error), known || "");
}

/** `code` names the error shown, so that hideBannerOf(code) can take it back. */
export function showBanner(text, code = "") {
  $("error-text").textContent = text;
  $("error-banner").dataset.code = code;
  $("error-banner").hidden = false;
}

export function hideBanner() {
  $("error-banner").hidden = true;
}

/** Hide the banner if it shows an error of this code (a network error, once back online). */
export function hideBannerOf(code) {
  if ($("error-banner").dataset.code === code) hideBanner();
}
