// The hubbub web app: session, rooms, live messages, the outbox; wires the page together.

import { call, roomPath } from "./api.js";
import { Connection, ConnectionLost, socketUrl } from "./connection.js";
import {
  discard,
  dropRoomOutbox,
  forget,
  pump,
  restoreOutbox,
  retry,
  sendMessage,
  typed,
  updateCounter,
} from "./outbox.js";
import {
  actions,
  renderHeader,
  renderPeopleNow,
  renderPublic,
  renderRoom,
  renderRoomList,
  renderTyping,
} from "./render.js";
import { Room } from "./rooms.js";
import { isMe, same, sortedRooms, state, token } from "./state.js";
import { SeenMarks, StoredOutbox, clearSession, loadSession, saveSession } from "./store.js";
import { $, errorText, hideBanner, hideBannerOf, showBanner, showError } from "./view.js";

const HISTORY_PAGE = 50;

// --- session ---------------------------------------------------------------------------------

function showLogin() {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-username").focus();
}

async function submitLogin(register) {
  const form = $("login-form");
  if (!form.reportValidity()) return;
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  hideBanner();
  try {
    if (register) await call("POST", "/users", { body: { username, password } });
    const data = await call("POST", "/login", { body: { username, password } });
    hideBanner();
    $("login-password").value = "";
    saveSession(data.token, data.user.name);
    await enter(loadSession());
  } catch (error) {
    showError(error);
  }
}

async function enter(session) {
  state.session = session;
  state.seen = new SeenMarks(session.user);
  state.stored = new StoredOutbox(session.user);
  let me;
  try {
    me = await call("GET", "/me", { token: session.token });
  } catch (error) {
    if (error.status === 401) {
      endSession("Your session has ended: please log in again.");
    } else {
      showError(error);
      setTimeout(() => state.session === session && enter(session), 2000);
    }
    return;
  }
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("current-user").textContent = me.user.name;
  for (const info of me.rooms) addRoom(info);
  restoreOutbox();
  renderRoomList();
  renderHeader();
  refreshPublic();
  state.conn = new Connection(socketUrl(location), session.token, {
    onState: connectionState,
    onLive: () => state.rooms.forEach((room) => joinRoom(room)),
    onFrame: received,
    onUnauthorized: () => endSession("Your session has ended: please log in again."),
  });
  state.conn.start();
  const wanted = roomInHash();
  if (wanted) joinByName(wanted);
  else if (state.rooms.size) openRoom(sortedRooms()[0].name);
  else renderRoom("bottom");
}

function endSession(message) {
  if (state.conn) state.conn.stop();
  clearSession();
  Object.assign(state, {
    session: null,
    conn: null,
    rooms: new Map(),
    current: null,
    publicRooms: [],
    outbox: new Map(),
    stored: null,
    pumping: new Set(),
    drafts: new Map(),
  });
  for (const list of ["room-list", "public-rooms", "presence-list", "member-list", "messages"]) {
    $(list).replaceChildren();
  }
  $("message-input").value = "";
  $("typing").textContent = "";
  document.title = "hubbub";
  if (message) showBanner(message);
  else hideBanner();
  showLogin();
}

async function logout() {
  const { token: current } = state.session;
  state.conn.stop();
  // Logging out is leaving this browser: what is unsent goes too.
  state.stored.clear();
  try {
    await call("POST", "/logout", { token: current });
  } catch {
    // The token is forgotten here either way; a server that is down revokes nothing.
  }
  endSession("");
}

function connectionState(name) {
  const pill = $("conn-state");
  pill.textContent = name;
  pill.dataset.state = name;
  if (name !== "live") for (const room of state.rooms.values()) room.joined = false;
  else hideBannerOf("network");
  markPresence();
}

/** Who is online is known only in a room joined on a live connection: else say so. */
function markPresence() {
  const known = !state.current || state.current.joined;
  $("people").dataset.presence = known ? "known" : "unknown";
  $("presence-unknown").hidden = known;
}

// --- rooms -----------------------------------------------------------------------------------

function addRoom(info) {
  let room = state.rooms.get(info.name);
  if (!room) {
    room = new Room(info.name);
    state.rooms.set(info.name, room);
  }
  room.info = info;
  room.lastSeq = Math.max(room.lastSeq, info.last_seq || 0);
  if (!state.seen.has(room.name)) state.seen.set(room.name, room.lastSeq);
  return room;
}

function dropRoom(name) {
  state.rooms.delete(name);
  dropRoomOutbox(name);
  if (state.current && state.current.name === name) {
    state.current = null;
    const next = sortedRooms()[0];
    if (next) openRoom(next.name);
    else renderRoom("bottom");
  }
  renderRoomList();
}

async function joinRoom(room) {
  const frame = { type: "join", room: room.name };
  // Resume from the newest message held; a room read to its (empty) start resumes from 0.
  const since = room.newestSeq !== null ? room.newestSeq : room.loaded ? 0 : null;
  if (since !== null) frame.since = since;
  let reply;
  try {
    reply = await state.conn.request(frame);
  } catch (error) {
    if (error instanceof ConnectionLost) return;
    showError(error);
    if (error.code === "not_found" || error.code === "forbidden") dropRoom(room.name);
    return;
  }
  room.joined = true;
  room.presence = new Set(reply.presence);
  room.lastSeq = Math.max(room.lastSeq, reply.seq);
  // A join with `since` is followed by the replay of everything after it: nothing to check.
  room.joinedSeq = frame.since === undefined ? reply.seq : 0;
  if (frame.since !== undefined && !reply.recovered) room.reset();
  await fillGaps(room);
  if (room === state.current) {
    markSeen();
    if (!room.loaded) loadOlder(room);
    renderRoom("keep");
    renderPeopleNow();
    markPresence();
  }
  renderRoomList();
  pump(room.name);
}

/** Open a room by name: one of ours, or a public room we join (404 for a private one). */
async function joinByName(name) {
  hideBanner();
  if (state.rooms.has(name)) {
    openRoom(name);
    return;
  }
  try {
    const { room: info } = await call("GET", roomPath(name), { token: token() });
    if (!info.members.some(isMe)) {
      await call("PUT", roomPath(name, "members", state.session.user), { token: token() });
      info.members.push(state.session.user);
    }
    const room = addRoom(info);
    if (state.conn.live) joinRoom(room);
    openRoom(name);
    refreshPublic();
  } catch (error) {
    showError(error);
  }
}

async function refreshPublic() {
  try {
    const { rooms } = await call("GET", "/rooms", { token: token() });
    state.publicRooms = rooms.filter((r) => !r.private && !r.members.some(isMe));
    for (const info of rooms) {
      const room = state.rooms.get(info.name);
      if (room) room.info = info;
    }
  } catch (error) {
    showError(error);
    return;
  }
  renderPublic();
  if (state.current) renderHeader();
}

async function fetchInfo(room) {
  try {
    const { room: info } = await call("GET", roomPath(room.name), { token: token() });
    room.info = info;
  } catch (error) {
    showError(error);
    return;
  }
  if (room === state.current) {
    renderHeader();
    renderPeopleNow();
  }
}

function openRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  const switched = state.current !== room;
  // What went wrong in the last room is not news in this one.
  if (switched && state.current) hideBanner();
  const input = $("message-input");
  if (switched) {
    // Each room keeps its own draft: text typed for one room never goes to another.
    if (state.current) state.drafts.set(state.current.name, input.value);
    input.value = state.drafts.get(name) || "";
    state.drafts.delete(name);
    updateCounter();
  }
  state.current = room;
  history.replaceState(null, "", `#room=${encodeURIComponent(name)}`);
  $("messages").replaceChildren();
  markSeen();
  renderRoomList();
  renderHeader();
  renderPeopleNow();
  markPresence();
  renderTyping();
  renderRoom("bottom");
  if (!room.loaded) loadOlder(room);
  if (!room.info) fetchInfo(room);
  toggleDrawer("rooms-open", false);
  if (switched) state.lastTyping = 0;
  input.focus();
}

function switchRoom(step) {
  const names = sortedRooms().map((r) => r.name);
  if (!names.length) return;
  const at = state.current ? names.indexOf(state.current.name) : -1;
  openRoom(names[(at + step + names.length) % names.length]);
}

function roomInHash() {
  const match = /^#room=([a-z0-9][a-z0-9_-]{0,63})$/.exec(decodeURIComponent(location.hash));
  return match ? match[1] : null;
}

/** Page older history over HTTP (it works while the WebSocket is reconnecting). */
async function loadOlder(room) {
  if (room.loadingOlder || (room.loaded && !room.more)) return;
  room.loadingOlder = true;
  const before = room.oldestSeq;
  const bound = before === null ? "" : `before=${before}&`;
  const query = `?${bound}limit=${HISTORY_PAGE}`;
  try {
    const page = await call("GET", roomPath(room.name, "messages") + query, { token: token() });
    for (const message of page.messages) room.add(message);
    room.loaded = true;
    room.more = page.more;
  } catch (error) {
    showError(error);
  } finally {
    room.loadingOlder = false;
  }
  await fillGaps(room);
  if (room === state.current) {
    markSeen();
    renderRoom("prepend");
  }
}

/** Read what we lack between the messages we hold (see Room.firstGap) over HTTP. */
async function fillGaps(room) {
  if (room.filling) return;
  room.filling = true;
  try {
    for (let after = room.firstGap(); after !== null; after = room.firstGap()) {
      const query = `?after=${after}&limit=200`;
      const page = await call("GET", roomPath(room.name, "messages") + query, { token: token() });
      let added = 0;
      for (const message of page.messages) if (room.add(message)) added += 1;
      if (!added) return;
    }
  } catch (error) {
    showError(error);
  } finally {
    room.filling = false;
  }
}

function markSeen() {
  const room = state.current;
  if (room) state.seen.set(room.name, room.lastSeq);
}

// --- frames from the server ------------------------------------------------------------------

function received(frame) {
  const room = frame.room === undefined ? null : state.rooms.get(frame.room);
  switch (frame.type) {
    case "message":
      if (room) receivedMessage(room, frame);
      break;
    case "presence":
      if (room) receivedPresence(room, frame);
      break;
    case "typing":
      if (room && !isMe(frame.user)) {
        room.typingNow(frame.user);
        if (room === state.current) renderTyping();
      }
      break;
    case "left":
      if (room && frame.reason === "deleted") {
        showBanner(`#${room.name} was deleted by its owner.`);
      } else if (room && frame.reason && frame.reason !== "left") {
        const what = frame.reason === "banned" ? "banned from" : "removed from";
        showBanner(`You were ${what} #${room.name}.`);
      }
      if (room && frame.reason) dropRoom(room.name);
      break;
    case "error":
      showError(Object.assign(new Error(frame.message), { code: frame.code }));
      break;
    default:
      break;
  }
}

function receivedMessage(room, frame) {
  const message = {
    room: frame.room,
    seq: frame.seq,
    id: frame.id,
    from: frame.from,
    body: frame.body,
    ts: frame.ts,
  };
  const ours = isMe(message.from) && state.outbox.has(message.id);
  if (ours) forget(message.id);
  if (!room.add(message) && !ours) return;
  if (room === state.current) {
    markSeen();
    renderTyping();
    renderRoom(ours ? "bottom" : "keep");
    // The list is redrawn whole, so it is no live region itself: announce just this one.
    if (!isMe(message.from)) $("announce").textContent = `${message.from}: ${message.body}`;
  } else {
    renderRoomList();
  }
}

function receivedPresence(room, frame) {
  if (frame.status === "online") room.presence.add(frame.user);
  else room.presence.delete(frame.user);
  const known = room.info && room.info.members.some((m) => same(m, frame.user));
  if (frame.status === "online" && room.info && !known) {
    fetchInfo(room);
  }
  if (room === state.current) renderPeopleNow();
}

// --- member actions --------------------------------------------------------------------------

async function memberAction(method, kind, user) {
  const room = state.current;
  if (!room) return;
  hideBanner();
  try {
    await call(method, roomPath(room.name, kind, user), { token: token() });
  } catch (error) {
    showError(error);
  }
  fetchInfo(room);
}

async function leaveRoom() {
  const room = state.current;
  if (!room) return;
  hideBanner();
  try {
    await call("DELETE", roomPath(room.name, "members", state.session.user), { token: token() });
  } catch (error) {
    showError(error);
    return;
  }
  dropRoom(room.name);
  refreshPublic();
}

// --- the owner's room actions ----------------------------------------------------------------

async function toggleArchive() {
  const room = state.current;
  if (!room || !room.info) return;
  hideBanner();
  try {
    const { room: info } = await call("PATCH", roomPath(room.name), {
      token: token(),
      body: { archived: !room.info.archived },
    });
    room.info = info;
  } catch (error) {
    showError(error);
    return;
  }
  if (room === state.current) renderHeader();
}

function askDelete() {
  const room = state.current;
  if (!room) return;
  $("delete-room-warning").textContent =
    `Every message of #${room.name} is removed for everyone, and its members lose it. ` +
    "This cannot be undone.";
  $("delete-room-name").value = "";
  $("delete-room-submit").disabled = true;
  $("delete-room-error").textContent = "";
  $("delete-room-dialog").dataset.room = room.name;
  $("delete-room-dialog").showModal();
}

async function deleteRoom(event) {
  event.preventDefault();
  const name = $("delete-room-dialog").dataset.room;
  if ($("delete-room-name").value.trim() !== name) return;
  try {
    await call("DELETE", roomPath(name), { token: token() });
  } catch (error) {
    $("delete-room-error").textContent = errorText(error);
    return;
  }
  $("delete-room-dialog").close();
  dropRoom(name);
  showBanner(`#${name} was deleted.`);
  refreshPublic();
}

async function createRoom(event) {
  event.preventDefault();
  const name = $("create-room-name").value.trim();
  const topic = $("create-room-topic").value.trim();
  const isPrivate = $("create-room-private").checked;
  const problem = $("create-room-error");
  try {
    const { room: info } = await call("POST", "/rooms", {
      token: token(),
      body: { name, topic, private: isPrivate },
    });
    $("create-room-dialog").close();
    const room = addRoom(info);
    if (state.conn.live) joinRoom(room);
    openRoom(room.name);
  } catch (error) {
    problem.textContent = errorText(error);
  }
}

function openCreateRoom() {
  $("create-room-form").reset();
  $("create-room-error").textContent = "";
  $("create-room-dialog").showModal();
}

function toggleDrawer(name, open) {
  const chat = $("chat-view");
  const on = open === undefined ? !chat.classList.contains(name) : open;
  chat.classList.toggle(name, on);
  const button = $(name === "rooms-open" ? "rooms-toggle" : "people-toggle");
  button.setAttribute("aria-expanded", String(on));
}

// --- wiring ----------------------------------------------------------------------------------

function bind() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitLogin(false);
  });
  $("register-submit").addEventListener("click", () => submitLogin(true));
  $("logout").addEventListener("click", logout);
  $("error-dismiss").addEventListener("click", hideBanner);
  $("create-room-open").addEventListener("click", openCreateRoom);
  $("create-room-cancel").addEventListener("click", () => $("create-room-dialog").close());
  $("create-room-form").addEventListener("submit", createRoom);
  $("rooms-refresh").addEventListener("click", refreshPublic);
  $("room-leave").addEventListener("click", leaveRoom);
  $("delete-room-form").addEventListener("submit", deleteRoom);
  $("delete-room-cancel").addEventListener("click", () => $("delete-room-dialog").close());
  $("delete-room-name").addEventListener("input", () => {
    const wanted = $("delete-room-dialog").dataset.room;
    $("delete-room-submit").disabled = $("delete-room-name").value.trim() !== wanted;
  });
  $("rooms-toggle").addEventListener("click", () => toggleDrawer("rooms-open"));
  $("people-toggle").addEventListener("click", () => toggleDrawer("people-open"));
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("join-room-name");
    joinByName(input.value.trim());
    input.value = "";
  });
  $("invite-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("invite-user");
    memberAction("PUT", "members", input.value.trim());
    input.value = "";
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  const input = $("message-input");
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  input.addEventListener("input", typed);
  $("messages").addEventListener("click", (event) => {
    const button = event.target.closest("[data-discard]");
    if (button) discard(button.dataset.discard);
  });
  $("messages").addEventListener("scroll", () => {
    const room = state.current;
    if (room && $("messages").scrollTop < 80) loadOlder(room);
  });
  document.addEventListener("keydown", (event) => {
    if (!state.session) return;
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      switchRoom(event.key === "ArrowUp" ? -1 : 1);
    } else if (event.key === "Escape" && !document.querySelector("dialog[open]")) {
      toggleDrawer("rooms-open", false);
      toggleDrawer("people-open", false);
      hideBanner();
    }
  });
  window.addEventListener("hashchange", () => {
    const wanted = roomInHash();
    const there = state.current && state.current.name === wanted;
    if (state.session && wanted && !there) joinByName(wanted);
  });
  window.addEventListener("focus", () => state.session && refreshPublic());
  setInterval(renderTyping, 1000);
}

function boot() {
  Object.assign(actions, {
    openRoom,
    joinByName,
    retry,
    loadOlder,
    memberAction,
    toggleArchive,
    askDelete,
  });
  bind();
  const session = loadSession();
  if (session) enter(session);
  else showLogin();
}

boot();
