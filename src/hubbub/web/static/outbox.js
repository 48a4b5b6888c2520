// The outbox: messages typed and not yet seen back from the server, sent in order, once.

import { ConnectionLost } from "./connection.js";
import { renderRoom } from "./render.js";
import { state } from "./state.js";
import { $, showBanner, showError } from "./view.js";

const TYPING_EVERY_MS = 2500;
const MAX_BODY = 4000;

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `w${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export function sendMessage() {
  const input = $("message-input");
  const body = input.value;
  const room = state.current;
  if (!room || !body.trim()) return;
  if ([...body].length > MAX_BODY) {
    showBanner(`Too long: a message holds at most ${MAX_BODY} characters.`);
    return;
  }
  const id = newId();
  state.outbox.set(id, { id, room: room.name, body, failed: false });
  input.value = "";
  renderRoom("bottom");
  pump(room.name);
}

/**
 * Send the room's queued messages one at a time, in the order they were typed. Each keeps
 * its id across reconnects, so a resend of a message the server already stored is answered
 * with the original ack and never makes a second copy. Stops when the connection drops;
 * the next `joined` of the room starts it again.
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
        if (room.seqs.has(ack.seq)) state.outbox.delete(next.id);
      } catch (error) {
        if (error instanceof ConnectionLost || error.code === "not_joined") return;
        if (error.code === "rate_limited" || error.code === "unavailable") {
          await new Promise((resolve) => setTimeout(resolve, (error.retryAfter || 1) * 1000));
          continue;
        }
        next.failed = true;
        showError(error);
        if (room === state.current) renderRoom("keep");
      }
    }
  } finally {
    state.pumping.delete(name);
  }
}

export function retry(id) {
  const pending = state.outbox.get(id);
  if (!pending) return;
  pending.failed = false;
  renderRoom("keep");
  pump(pending.room);
}

export function typed() {
  const room = state.current;
  const now = Date.now();
  if (!room || !room.joined || !$("message-input").value) return;
  if (now - state.lastTyping < TYPING_EVERY_MS) return;
  state.lastTyping = now;
  state.conn.post({ type: "typing", room: room.name });
}
