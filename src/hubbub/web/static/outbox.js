// The outbox: messages typed and not yet seen back from the server, sent in order, once. It is
// kept in localStorage until each message's ack, so a reload or a crashed tab loses none.

import { ConnectionLost } from "./connection.js";
import { renderRoom } from "./render.js";
import { state } from "./state.js";
import { $, errorText, hideBanner, showBanner, showError } from "./view.js";

const TYPING_EVERY_MS = 2500;
/** The server's longest body (`--max-body`, 4000 by default), in code points as it counts. */
export const MAX_BODY = 4000;
const COUNTER_FROM = Math.floor(MAX_BODY * 0.9);

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `w${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Characters as the server counts them: code points, so an emoji is one, not two. */
export function codePoints(text) {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    const next = text.charCodeAt(i + 1);
    if (unit >= 0xd800 && unit < 0xdc00 && next >= 0xdc00 && next < 0xe000) i++;
    count++;
  }
  return count;
}

/** The counter under the composer: shown from 90% of the limit, an error above it. */
export function updateCounter() {
  const counter = $("message-counter");
  const length = codePoints($("message-input").value);
  const over = length - MAX_BODY;
  counter.hidden = length < COUNTER_FROM;
  counter.dataset.state = over > 0 ? "over" : "near";
  counter.textContent =
    over > 0 ? `${length} / ${MAX_BODY}: ${over} over` : `${length} / ${MAX_BODY}`;
  $("message-input").setAttribute("aria-invalid", String(over > 0));
}

export function sendMessage() {
  const input = $("message-input");
  const body = input.value;
  const room = state.current;
  if (!room || !body.trim()) return;
  hideBanner();
  const over = codePoints(body) - MAX_BODY;
  if (over > 0) {
    // Nothing is cut: the text stays in the composer to be shortened.
    showBanner(
      `Too long: a message is at most ${MAX_BODY} characters and this one is ${over} over. ` +
        "Shorten it, or split it in two, and send again.",
    );
    updateCounter();
    return;
  }
  const pending = { id: newId(), room: room.name, body, failed: false, reason: "" };
  state.outbox.set(pending.id, pending);
  state.stored.put(pending);
  input.value = "";
  updateCounter();
  renderRoom("bottom");
  pump(room.name);
}

/** Put back the messages a previous page left unsent (failed ones stay failed). */
export function restoreOutbox() {
  const lost = new Set();
  for (const pending of state.stored.load()) {
    if (state.rooms.has(pending.room)) {
      state.outbox.set(pending.id, { ...pending, acked: false });
    } else {
      lost.add(pending.room);
      state.stored.drop(pending.id);
    }
  }
  if (lost.size) {
    const rooms = [...lost].map((name) => `#${name}`).join(", ");
    showBanner(`Unsent messages to ${rooms} were dropped: you are no longer in it.`);
  }
}

/**
 * Send the room's queued messages one at a time, in the order they were typed. Each keeps
 * its id across reconnects and reloads, so a resend of a message the server already stored
 * is answered with the original ack and never makes a second copy. Stops when the
 * connection drops; the next `joined` of the room starts it again.
 */
export async function pump(name) {
  if (state.pumping.has(name)) return;
  state.pumping.add(name);
  try {
    for (;;) {
      const room = state.rooms.get(name);
      const next = [...state.outbox.values()].find((p) => p.room === name && !p.failed && !p.acked);
      if (!room || !room.joined || !next) return;
      try {
        const frame = { type: "send", room: name, id: next.id, body: next.body };
        const ack = await state.conn.request(frame);
        next.acked = true;
        state.stored.drop(next.id);
        if (room.seqs.has(ack.seq)) state.outbox.delete(next.id);
      } catch (error) {
        if (error instanceof ConnectionLost || error.code === "not_joined") return;
        if (error.code === "rate_limited" || error.code === "unavailable") {
          await new Promise((resolve) => setTimeout(resolve, (error.retryAfter || 1) * 1000));
          continue;
        }
        if (!state.outbox.has(next.id)) continue; // discarded or seen back meanwhile
        next.failed = true;
        next.reason = errorText(error);
        state.stored.put(next);
        showError(error);
        if (room === state.current) renderRoom("keep");
      }
    }
  } finally {
    state.pumping.delete(name);
  }
}

/** Out of the outbox and of storage: seen back from the server, or thrown away. */
export function forget(id) {
  state.outbox.delete(id);
  state.stored.drop(id);
}

/** Forget the unsent messages of a room we are no longer in. */
export function dropRoomOutbox(name) {
  for (const pending of [...state.outbox.values()]) {
    if (pending.room === name) forget(pending.id);
  }
}

export function retry(id) {
  const pending = state.outbox.get(id);
  if (!pending) return;
  hideBanner();
  pending.failed = false;
  pending.reason = "";
  state.stored.put(pending);
  renderRoom("keep");
  pump(pending.room);
}

/** Throw away a message the server refused. */
export function discard(id) {
  const pending = state.outbox.get(id);
  if (!pending || !pending.failed) return;
  forget(id);
  hideBanner();
  renderRoom("keep");
}

export function typed() {
  updateCounter();
  const room = state.current;
  const now = Date.now();
  if (!room || !room.joined || !$("message-input").value) return;
  if (now - state.lastTyping < TYPING_EVERY_MS) return;
  state.lastTyping = now;
  state.conn.post({ type: "typing", room: room.name });
}
