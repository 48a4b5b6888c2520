// What the app keeps in localStorage: the session, and per user the last seq seen per room
// and the messages not yet acked.

const TOKEN = "hubbub.token";
const USER = "hubbub.user";

export function loadSession() {
  const token = localStorage.getItem(TOKEN);
  const user = localStorage.getItem(USER);
  return token && user ? { token, user } : null;
}

export function saveSession(token, user) {
  localStorage.setItem(TOKEN, token);
  localStorage.setItem(USER, user);
}

export function clearSession() {
  localStorage.removeItem(TOKEN);
  localStorage.removeItem(USER);
}

/** The last seq the user has seen in each room, so unread counts survive a reload. */
export class SeenMarks {
  constructor(user) {
    this.key = `hubbub.seen.${user.toLowerCase()}`;
    try {
      this.marks = JSON.parse(localStorage.getItem(this.key) || "{}") || {};
    } catch {
      this.marks = {};
    }
  }

  has(room) {
    return Object.hasOwn(this.marks, room);
  }

  get(room) {
    return this.marks[room] || 0;
  }

  set(room, seq) {
    if (this.get(room) >= seq && this.has(room)) return;
    this.marks[room] = seq;
    localStorage.setItem(this.key, JSON.stringify(this.marks));
  }
}

/**
 * The outbox kept across reloads and crashed tabs: the messages typed and not yet acked, in
 * the order typed, per user (localStorage is per origin, so per server already). Each change
 * reads the list again before writing it, so two tabs of one user keep each other's.
 */
export class StoredOutbox {
  constructor(user) {
    this.key = `hubbub.outbox.${user.toLowerCase()}`;
  }

  /** The stored messages: [{id, room, body, failed, reason}], oldest first. */
  load() {
    try {
      const list = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(list) ? list.filter(isPending) : [];
    } catch {
      return [];
    }
  }

  /** Add or update one message (it keeps its place when already stored). */
  put(pending) {
    const { id, room, body, failed, reason } = pending;
    const entry = { id, room, body, failed: Boolean(failed), reason: reason || "" };
    const list = this.load();
    const at = list.findIndex((p) => p.id === id);
    if (at < 0) list.push(entry);
    else list[at] = entry;
    this.write(list);
  }

  drop(id) {
    const list = this.load();
    const kept = list.filter((p) => p.id !== id);
    if (kept.length !== list.length) this.write(kept);
  }

  clear() {
    localStorage.removeItem(this.key);
  }

  write(list) {
    try {
      if (list.length) localStorage.setItem(this.key, JSON.stringify(list));
      else localStorage.removeItem(this.key);
    } catch {
      // Storage full or turned off: the page's own copy is still sent, just not kept.
    }
  }
}

function isPending(p) {
  return p && typeof p.id === "string" && typeof p.room === "string" && typeof p.body === "string";
}
