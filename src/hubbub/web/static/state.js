// The app's state, shared by its modules, and who "me" is.

export const state = {
  session: null, // {token, user}
  conn: null,
  seen: null,
  rooms: new Map(),
  current: null,
  publicRooms: [],
  outbox: new Map(), // id -> {id, room, body, failed, reason}: sends not yet seen back, in typed order
  stored: null, // StoredOutbox: the outbox's messages not yet acked, kept in localStorage
  pumping: new Set(),
  drafts: new Map(), // room -> text typed there and not sent, while another room is open
  lastTyping: 0,
};

export const same = (a, b) => a.toLowerCase() === b.toLowerCase();
export const isMe = (name) => state.session !== null && same(name, state.session.user);
export const token = () => state.session.token;

/** Rooms in the order of the room list (Alt+Up/Down walks it). */
export function sortedRooms() {
  return [...state.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** Messages of a room that is not open, since its last seq seen (own sends included). */
export function unread(room) {
  if (room === state.current) return 0;
  return Math.max(0, room.lastSeq - state.seen.get(room.name));
}

