// What the app keeps in localStorage: the session, and per user the last seq seen per room.

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
