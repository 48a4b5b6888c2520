// Drawing the page from the state: room list, public rooms, header, messages, typing.

import { actionMenu, renderPeople } from "./people.js";
import { isMe, sortedRooms, state, unread } from "./state.js";
import { $, continues, dayKey, daySeparator, el, messageNode, typingText } from "./view.js";

/** What the drawn controls do; app.js fills it in (it owns the actions). */
export const actions = {};

export function renderRoomList() {
  const items = sortedRooms().map((room) => {
    const count = unread(room);
    const current = room === state.current;
    return el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          className: `room-item${current ? " current" : ""}${count ? " unread" : ""}`,
          testid: `room-item-${room.name}`,
          "aria-current": current ? "page" : null,
          onclick: () => actions.openRoom(room.name),
        },
        roomMark(room),
        el("span", { className: "name", text: room.name }),
        count
          ? el("span", { className: "badge", testid: `unread-${room.name}`, text: String(count) })
          : null,
      ),
    );
  });
  $("room-list").replaceChildren(...items);
  const total = [...state.rooms.values()].reduce((n, room) => n + unread(room), 0);
  document.title = total ? `(${total}) hubbub` : "hubbub";
}

/** "#" for a public room, a padlock for a private one. */
function roomMark(room) {
  const isPrivate = Boolean(room.info && room.info.private);
  return el("span", {
    className: isPrivate ? "hash lock" : "hash",
    text: isPrivate ? "" : "#",
    title: isPrivate ? "private room" : null,
    "aria-label": isPrivate ? "private" : null,
  });
}

export function renderPublic() {
  const items = state.publicRooms
    .filter((info) => !state.rooms.has(info.name))
    .map((info) =>
      el(
        "li",
        { testid: `public-room-${info.name}` },
        el("span", { className: "name", text: `#${info.name}`, title: info.topic || null }),
        el("button", {
          type: "button",
          className: "small",
          testid: `join-${info.name}`,
          text: "Join",
          onclick: () => actions.joinByName(info.name),
        }),
      ),
    );
  if (!items.length) items.push(el("li", { className: "hint", text: "No other public rooms." }));
  $("public-rooms").replaceChildren(...items);
}

export function renderHeader() {
  const room = state.current;
  $("room-title").replaceChildren(...(room ? [roomMark(room), room.name] : ["No room open"]));
  $("room-topic").textContent = room && room.info ? room.info.topic : "";
  $("room-topic").dir = "auto";
  $("room-title").dir = "auto";
  const owner = Boolean(room) && room.role(state.session.user) === "owner";
  $("room-leave").hidden = !room || owner;
  const archived = Boolean(room && room.info && room.info.archived);
  $("room-menu-slot").replaceChildren(
    owner
      ? actionMenu("room-menu", "Room actions", [
          ["room-archive", archived ? "Unarchive room" : "Archive room", actions.toggleArchive],
          ["room-delete", "Delete room…", actions.askDelete],
        ])
      : "",
  );
  $("archived-note").hidden = !archived;
  const enabled = Boolean(room) && !archived;
  $("message-input").disabled = !enabled;
  $("message-send").disabled = !enabled;
}

export function renderPeopleNow() {
  renderPeople(state.current, state.session.user, {
    kick: (user) => actions.memberAction("DELETE", "members", user),
    ban: (user) => actions.memberAction("PUT", "bans", user),
    promote: (user) => actions.memberAction("PUT", "moderators", user),
    demote: (user) => actions.memberAction("DELETE", "moderators", user),
  });
}

export function renderTyping() {
  const room = state.current;
  $("typing").textContent = room ? typingText(room.typists()) : "";
}

/**
 * Redraw the open room's messages. `bottom` scrolls to the newest; `keep` keeps the view
 * where it is (following new messages only when already at the bottom); `prepend` keeps
 * the same messages in view while older ones are added above them.
 */
export function renderRoom(mode) {
  const box = $("messages");
  const room = state.current;
  if (!room) {
    const hint = "Pick a room on the left, or create one.";
    box.replaceChildren(el("p", { className: "empty", text: hint }));
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const nodes = [historyEdge(room)];
  let day = null;
  let previous = null;
  for (const message of room.messages) {
    if (dayKey(message.ts) !== day) {
      day = dayKey(message.ts);
      nodes.push(daySeparator(message.ts));
    }
    const continued = continues(previous, message);
    nodes.push(messageNode(message, { mine: isMe(message.from), continued }));
    previous = message;
  }
  for (const pending of state.outbox.values()) {
    if (pending.room !== room.name) continue;
    const message = { id: pending.id, from: state.session.user, body: pending.body };
    const node = messageNode(message, {
      mine: true,
      pending: !pending.failed,
      failed: pending.failed,
      continued: continues(previous, message),
    });
    previous = message;
    if (pending.failed) {
      node.append(
        el("button", {
          type: "button",
          className: "small",
          testid: "message-retry",
          text: "Retry",
          onclick: () => actions.retry(pending.id),
        }),
      );
    }
    nodes.push(node);
  }
  box.replaceChildren(...nodes);
  if (mode === "bottom" || (mode === "keep" && atBottom)) box.scrollTop = box.scrollHeight;
  else if (mode === "prepend") box.scrollTop = box.scrollHeight - fromBottom;
  // A short history does not fill the view, so no scroll could ask for more: ask now.
  if (room.loaded && room.more && box.scrollHeight <= box.clientHeight) actions.loadOlder(room);
}

function historyEdge(room) {
  if (room.loaded && !room.more) {
    const text = room.messages.length
      ? `This is the start of #${room.name}.`
      : "No messages yet: say hello!";
    return el("p", { className: "edge", testid: "history-start", text });
  }
  const text = room.loadingOlder || !room.loaded ? "Loading…" : "Scroll up for older messages";
  return el("p", { className: "edge", testid: "history-more", text });
}
